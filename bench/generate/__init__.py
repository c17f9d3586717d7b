"""`bench generate`: videos for VBench (or the tiny benchmark) from a run's student or a teacher.

Layout of an output folder (default `RUN/videos/<suite>_<N>step/`, `RUN/videos/<suite>_teacher<N>/`):

  {prompt}-{index}.mp4        VBench's standard-mode names, index 0..videos_per_prompt-1
  manifest.jsonl              one JSON record per finished video (single process), or
  manifest.shard-K-of-N.jsonl one per process when sharded; `read_manifest` merges them
  suite_info.json             prompt -> dimensions (+ auxiliary_info) and the suite's source
  generation.json             run_record: command, base seed, sampler settings, versions, git

A video counts as done when its final file exists AND a manifest record names it: the file
is written under a temporary name and renamed into place (bench/video_io.write_mp4), and its
record is appended only after the rename, so a killed process leaves at worst a final file
without a record, which the next run regenerates.

Seeds: every video's seed is derived from (base seed, prompt, index) with SHA-256
(`video_seed`), and every video gets its own torch.Generator, so `--seed S` regenerates
each video exactly, whatever the batch size or the shard that makes it.

Sharding: the plan is one deterministic list (suite order, then index); shard k of n takes
the items i with i % n == k, whether or not they are already done, so shard membership
never changes between a run and its resume.

The library part (`plan_videos`, `generate_videos`, `read_manifest`) never prints; only the
typer command does. torch is imported lazily so that `--dry-run` stays light.

The package, by stage (every name stays importable as `bench.generate.X`; a test that
replaces a name replaces it in the module that looks it up):

  sampling.py   the sampling settings as one value (`SamplingSettings`), their defaults and checks
  plan.py       the prompt suites, the video plan (names, seeds), shards
  manifest.py   manifest.jsonl, its repair, the intact-video check, suite_info.json
  videos.py     `generate_videos`: a shard's videos into a folder, and generation.json
  cli.py        the `bench generate` verb
"""

from __future__ import annotations

from t2v_turbo_core.schedule import LCM_ORIGIN_STEPS, NUM_TRAIN_TIMESTEPS  # noqa: F401
from bench.generate.sampling import (  # noqa: F401
    DEFAULT_SPACING, DEFAULT_STUDENT_GUIDANCE, DEFAULT_STUDENT_STEPS, DEFAULT_TEACHER_PROTOCOL, DEFAULT_TEACHER_STEPS,
    SAMPLERS, TEACHER_PROTOCOLS, GenerateError, SamplingSettings, check_guidance_scale, check_origin_steps, check_steps,
    default_origin_steps, native_plan, planned_timesteps,
)

from bench.generate.plan import (  # noqa: F401
    DEFAULT_VIDEOS_PER_PROMPT, GENERATION_NAME, PlannedVideo, SUITES, SUITE_INFO_NAME, SuiteItem,
    as_suite_items, draw_base_seed, limit_items, load_suite, plan_videos, read_prompt_file, shard_plan,
    video_seed, videos_for,
)
from bench.generate.manifest import (  # noqa: F401
    MANIFEST_NAME, _append_record, _write_json, check_out_dir, check_video_file, manifest_files,
    manifest_name, read_manifest, read_manifest_records, recorded_base_seed, repair_manifest, suite_info,
)
from bench.generate.videos import (  # noqa: F401
    GenerationSummary, RESUME_KEYS, SEED_DERIVATION, _w_projection_dim, _write_generation_record,
    generate_videos, one_video_at_a_time,
)
from bench.generate.cli import _distributed_shard, _end_distributed, default_label, generate_command, register  # noqa: F401
