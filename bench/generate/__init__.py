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
typer command does. This module imports torch lazily so that `--dry-run` stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import typer

from t2v_turbo_core.safe_io import atomic_write_bytes, atomic_write_json
from bench.errors import BenchError
from bench.vbench import suite as vbench_suite
from bench.video_io import TMP_SUFFIX

SUITES = ("vbench", "tiny")
MANIFEST_NAME = "manifest.jsonl"
SUITE_INFO_NAME = "suite_info.json"
GENERATION_NAME = "generation.json"
from bench.generate.sampling import (  # noqa: F401  (re-exported: bench.generate.X stays the public path)
    DEFAULT_SPACING, DEFAULT_STUDENT_GUIDANCE, DEFAULT_STUDENT_STEPS, DEFAULT_TEACHER_PROTOCOL, DEFAULT_TEACHER_STEPS,
    SAMPLERS, TEACHER_PROTOCOLS, GenerateError, SamplingSettings, check_guidance_scale, check_origin_steps, check_steps,
    default_origin_steps, native_plan, planned_timesteps,
)
from t2v_turbo_core.schedule import LCM_ORIGIN_STEPS, NUM_TRAIN_TIMESTEPS  # noqa: F401

DEFAULT_VIDEOS_PER_PROMPT = vbench_suite.VIDEOS_PER_PROMPT
SEED_DERIVATION = "int.from_bytes(sha256(f'{base_seed}|{prompt}|{index}').digest()[:8], 'big') & (2**63 - 1)"
# Settings that must agree between the videos already in a folder and the ones a resume adds.
RESUME_KEYS = ("sampler", "steps", "timesteps", "guidance_scale", "base_seed", "teacher_protocol", "origin_steps")


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class SuiteItem:
    """A prompt and what it serves (VBench's PromptEntry and the tiny world's TinyPrompt fit)."""

    prompt: str
    dimensions: tuple[str, ...] = ()
    auxiliary_info: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class PlannedVideo:
    position: int  # index in the full, unsharded plan
    prompt: str
    index: int
    file: str  # relative to the output folder


def as_suite_items(prompts_or_items: Iterable[Any]) -> list[SuiteItem]:
    """Plain strings or suite entries (anything with `.prompt`) -> SuiteItems, order kept."""
    items = []
    for x in prompts_or_items:
        if isinstance(x, str):
            items.append(SuiteItem(x))
        elif hasattr(x, "prompt"):
            items.append(SuiteItem(x.prompt, tuple(getattr(x, "dimensions", ()) or ()), dict(getattr(x, "auxiliary_info", {}) or {})))
        else:
            raise GenerateError(f"not a prompt or suite entry: {x!r}")
    return items


def load_suite(suite: str, dimensions: Sequence[str] | None = None) -> tuple[list[SuiteItem], dict]:
    """(items, source description) of a named suite; reads json only, loads no model."""
    dims = list(dimensions) if dimensions else None
    try:
        if suite == "vbench":
            src = vbench_suite.suite_source()
            entries = vbench_suite.load_vbench_suite(dims)
            return as_suite_items(entries), {"suite": "vbench", "path": str(src.path), "origin": src.origin, "version": src.version}
        if suite == "tiny":
            from bench.tinyworld.suite import tiny_suite

            return as_suite_items(tiny_suite(dims)), {"suite": "tiny", "module": "bench.tinyworld.suite"}
    except ValueError as err:  # unknown dimension names
        raise GenerateError(str(err)) from err
    raise GenerateError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")


def limit_items(items: Sequence[SuiteItem], limit: int) -> list[SuiteItem]:
    """The first `limit` prompts in suite order (suite entries are distinct prompts)."""
    if limit < 1:
        raise GenerateError(f"--limit must be >= 1, got {limit}")
    return list(items[:limit])


def read_prompt_file(path: Path) -> list[SuiteItem]:
    """One prompt per line; blank lines are skipped, every other character is kept."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise GenerateError(f"cannot read prompt file {path}: {err}") from err
    except UnicodeDecodeError as err:
        raise GenerateError(
            f"prompt file {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8"
        ) from None
    prompts = list(dict.fromkeys(line for line in lines if line.strip()))
    if not prompts:
        raise GenerateError(f"prompt file {path} holds no prompts")
    return [SuiteItem(p) for p in prompts]


def videos_for(item: SuiteItem, videos_per_prompt: int, flicker_oversample: bool) -> int:
    """VBench's rule: a temporal_flickering prompt is sampled 25 times, then statically filtered."""
    rule = vbench_suite.TEMPORAL_FLICKERING_OVERSAMPLING
    if flicker_oversample and rule.dimension in item.dimensions:
        return max(videos_per_prompt, rule.n_sampled)
    return videos_per_prompt


def plan_videos(
    items: Sequence[SuiteItem],
    videos_per_prompt: int = DEFAULT_VIDEOS_PER_PROMPT,
    flicker_oversample: bool = False,
) -> list[PlannedVideo]:
    """Every video of the suite in one deterministic order; file names checked first.

    Raises GenerateError naming the prompt when `{prompt}-{index}.mp4` cannot be a file name,
    so that a bad prompt list fails before any model is loaded.
    """
    if videos_per_prompt < 1:
        raise GenerateError(f"--videos-per-prompt must be >= 1, got {videos_per_prompt}")
    seen: set[str] = set()
    plan: list[PlannedVideo] = []
    for item in items:
        if item.prompt in seen:
            # VBench looks videos up by prompt string: one set of videos per distinct prompt.
            continue
        seen.add(item.prompt)
        n = videos_for(item, videos_per_prompt, flicker_oversample)
        try:
            names = vbench_suite.standard_video_filenames(item.prompt, n)
        except ValueError as err:
            raise GenerateError(str(err)) from err
        for i, name in enumerate(names):
            plan.append(PlannedVideo(len(plan), item.prompt, i, name))
    return plan


def shard_plan(plan: Sequence[PlannedVideo], shard: tuple[int, int]) -> list[PlannedVideo]:
    k, n = shard
    if n < 1 or not 0 <= k < n:
        raise GenerateError(f"bad shard {k} of {n}: need 0 <= index < count")
    return [v for v in plan if v.position % n == k]


def video_seed(base_seed: int, prompt: str, index: int) -> int:
    """The seed of video `index` of `prompt`; independent of batch, shard and order."""
    digest = hashlib.sha256(f"{base_seed}|{prompt}|{index}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def draw_base_seed() -> int:
    return int.from_bytes(os.urandom(4), "big")


# --------------------------------------------------------------------------- manifests


def manifest_name(shard: tuple[int, int]) -> str:
    k, n = shard
    return MANIFEST_NAME if n == 1 else f"manifest.shard-{k}-of-{n}.jsonl"


def manifest_files(out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(
        p for p in out_dir.iterdir()
        if p.is_file() and (p.name == MANIFEST_NAME or (p.name.startswith("manifest.shard-") and p.name.endswith(".jsonl")))
    )


def read_manifest_records(out_dir: Path) -> list[dict]:
    """Every record of every manifest file in the folder, as written (duplicates kept).

    A torn last line (a process killed mid-append) is skipped: its video has no record and
    is therefore regenerated (`repair_manifest` removes the line itself).
    """
    records = []
    for path in manifest_files(out_dir):
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("file"), str):
                records.append(rec)
    return records


def repair_manifest(path: Path) -> int:
    """Drop every line of `path` that is not a complete JSON record (a write torn by a kill);
    rewritten atomically. Returns the number of lines dropped."""
    if not path.is_file():
        return 0
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    kept: list[bytes] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("file"), str):
            kept.append(line)
    new = b"".join(line + b"\n" for line in kept)
    if new != raw:
        atomic_write_bytes(path, new)
    return sum(1 for line in lines if line.strip()) - len(kept)


def read_manifest(out_dir: str | Path) -> dict[str, dict]:
    """{file: record} merged over `manifest.jsonl` and every `manifest.shard-K-of-N.jsonl`.

    A file recorded twice (regenerated after an interrupted run) keeps its latest record.
    """
    merged: dict[str, dict] = {}
    for rec in read_manifest_records(Path(out_dir)):
        merged[rec["file"]] = rec
    return merged


def _append_record(path: Path, record: dict) -> None:
    line = json.dumps(record, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, data: Any) -> None:
    # (the temp name is per process and call: two shards may write the same folder)
    atomic_write_json(path, data, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def recorded_base_seed(out_dir: Path) -> int | None:
    """The base seed the folder's videos were made with (generation.json, else a record)."""
    gen = Path(out_dir) / GENERATION_NAME
    if gen.is_file():
        try:
            seed = json.loads(gen.read_text(encoding="utf-8")).get("seeds", {}).get("base_seed")
            if isinstance(seed, int):
                return seed
        except ValueError:
            pass
    for rec in read_manifest_records(Path(out_dir)):
        if isinstance(rec.get("base_seed"), int):
            return rec["base_seed"]
    return None


def check_out_dir(out_dir: Path) -> None:
    """The output folder can be created or reused, and writing it writes nothing elsewhere.

    Checked before any model loads: an existing file or a dangling symlink where the folder
    should be, a parent that is a file, and a manifest or record file that is a symlink (an
    append would write through it, to wherever it points) are errors naming the path.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink() and not out_dir.exists():
        raise GenerateError(f"--out {out_dir} is a dangling symlink (to {os.readlink(out_dir)}); remove it or choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise GenerateError(f"--out {out_dir} is an existing file, not a folder; choose another --out")
    for parent in out_dir.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise GenerateError(f"cannot create {out_dir}: {parent} is a file, not a folder")
            break
    if out_dir.is_dir():
        for p in out_dir.iterdir():
            is_record = p.name in (MANIFEST_NAME, GENERATION_NAME, SUITE_INFO_NAME) or (
                p.name.startswith("manifest.shard-") and p.name.endswith(".jsonl"))
            if is_record and p.is_symlink():
                raise GenerateError(f"{p} is a symlink; bench generate writes its records only to regular files "
                                    "in the output folder (replace it with a copy of what it points to)")


def check_video_file(path: Path, record: dict, num_frames: int) -> str | None:
    """Why a recorded video must be made again (None: it is intact).

    Cheap: the size the record noted at writing time, and the container header's frame count
    (no decoding), which catch a file cut short, emptied or replaced.
    """
    from bench.video_io import VideoReadError, probe_video

    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if isinstance(record.get("bytes"), int) and size != record["bytes"]:
        return f"{size} bytes, {record['bytes']} when written"
    try:
        frames = probe_video(path)
    except VideoReadError as err:
        return str(err)
    if frames != num_frames:
        return f"{frames} frames, expected {num_frames}"
    return None


def suite_info(items: Sequence[SuiteItem], source: dict | None, videos_per_prompt: int, flicker_oversample: bool) -> dict:
    prompts = {}
    for item in items:
        prompts.setdefault(item.prompt, {
            "dimensions": list(item.dimensions),
            "auxiliary_info": item.auxiliary_info,
            "videos": videos_for(item, videos_per_prompt, flicker_oversample),
        })
    rule = vbench_suite.TEMPORAL_FLICKERING_OVERSAMPLING
    return {
        "source": source or {"suite": "custom"},
        "videos_per_prompt": videos_per_prompt,
        "flicker_oversample": (
            {"dimension": rule.dimension, "sampled": rule.n_sampled, "kept": rule.n_kept,
             "filter": rule.filter_command, "filtered_subdir": rule.filtered_subdir}
            if flicker_oversample else None
        ),
        "file_pattern": "{prompt}-{index}.mp4",
        "prompts": prompts,
    }


# --------------------------------------------------------------------------- generation


@dataclass
class GenerationSummary:
    out_dir: Path
    shard: tuple[int, int]
    base_seed: int
    planned: int  # videos of this shard
    skipped: int  # already complete
    generated: int
    seconds: float
    manifest: Path
    settings: dict
    damaged: int = 0  # recorded videos found damaged on this run and made again

    def as_dict(self) -> dict:
        return {**self.__dict__, "out_dir": str(self.out_dir), "manifest": str(self.manifest)}


def _w_projection_dim(unet: Any) -> int:
    """Input size of the student's w projection (`cond_proj`); error if it has none."""
    from t2v_turbo_core.lora import w_projection_parameters

    weights = [p for n, p in w_projection_parameters(unet).items() if n.endswith("weight")]
    if not weights:
        raise GenerateError(
            "this student has no w projection (no `cond_proj` weights), so the embedded guidance "
            "scale cannot be fed to it; was it built by `TextToVideoModel.make_student`?"
        )
    return int(weights[0].shape[-1])


def one_video_at_a_time(unet: Any) -> Any:
    """The denoiser called on one video per forward, whatever the batch it is handed.

    Float kernels pick their algorithm by tensor shape, so a video denoised in a batch of 4
    differs from the same video alone in the last bits (~1e-6), which flips a few 8-bit pixel
    roundings. Calling per video makes every video bit-identical whatever the batch size,
    shard count or resume point, at the cost of batching's throughput.
    """
    import torch

    from t2v_turbo_core.models import predict_noise

    class OneVideoAtATime(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, z, t, encoder_hidden_states=None, timestep_cond=None, **kwargs):
            b = z.shape[0]

            def row(x: Any, i: int) -> Any:
                return x[i : i + 1] if torch.is_tensor(x) and x.ndim > 0 and x.shape[0] == b else x

            return torch.cat([
                predict_noise(self.inner, z[i : i + 1], row(t, i), row(encoder_hidden_states, i), row(timestep_cond, i),
                              **{k: row(v, i) for k, v in kwargs.items()})
                for i in range(b)
            ])

    return OneVideoAtATime(unet)


def generate_videos(
    bundle: Any,
    unet: Any,
    prompts_or_suite_items: Iterable[Any],
    out_dir: str | Path,
    sampler: str = "student",
    steps: int | None = None,
    guidance_scale: float | None = None,
    videos_per_prompt: int = DEFAULT_VIDEOS_PER_PROMPT,
    seed: int | None = None,
    batch_size: int = 4,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[int, int], None] | None = None,
    model_label: str = "",
    spacing: str | None = None,
    flicker_oversample: bool = False,
    suite_source: dict | None = None,
    record: dict | None = None,
    batch_invariant: bool = False,
    teacher_protocol: str = DEFAULT_TEACHER_PROTOCOL,
    origin_steps: int | None = None,
    sampling: SamplingSettings | None = None,
) -> GenerationSummary:
    """Generate (or finish generating) this shard's videos into `out_dir`; returns a summary.

    bundle: the teacher's `TextToVideoModel` (VAE, text encoder, schedule, geometry, fps).
    unet: the merged student UNet (sampler="student") or the teacher's UNet ("teacher").
    steps: default 4 (student) / 50 (teacher). guidance_scale: the student's embedded w
    (default 7.5) or the teacher's CFG scale (default `bundle.cfg_scale`). spacing: LCM
    'strided' (default) / 'linspace' for students, DDIM 'trailing' (default) / 'leading'.
    seed: base seed; None reuses the folder's recorded one, else draws one (recorded).
    progress(done, total) is called at the start and after every batch.
    batch_invariant: denoise one video per UNet call (`one_video_at_a_time`): bit-identical
    videos whatever the batch size, shard count or resume point; batched calls (the default)
    reproduce a video exactly only with the same batch composition.
    record: extra fields for generation.json (the CLI passes the suite name and run).
    teacher_protocol (sampler="teacher"): "matched" (DDIM + CFG as above) or "native", the
    teacher's own sampler (`bundle.native_sampler`: VideoCrafter2's LVDM DDIM, eta 1, CFG 12,
    x0 rescaling, fps 28; ModelScope's DDIMScheduler from its scheduler_config.json, CFG 9);
    its steps and CFG scale are the defaults then, and `spacing` does not apply.
    origin_steps (student): L of the LCM origin grid (default 50; 200 for a v2 student).
    sampling: all of the above as one value (`SamplingSettings`, what the CLI passes); the loose
    keywords (sampler, steps, guidance_scale, spacing, teacher_protocol, origin_steps) are then
    left out, and are otherwise made into that value here.
    """
    import torch

    from bench.video_io import tensor_to_video, write_mp4
    from t2v_turbo_core.sampling import consistency_sample, planned_ddim_sample, teacher_ddim_sample

    if sampling is None:
        sampling = SamplingSettings.make(sampler, steps, guidance_scale, spacing, origin_steps, teacher_protocol)
    elif (steps, guidance_scale, spacing, origin_steps, teacher_protocol) != (None, None, None, None, DEFAULT_TEACHER_PROTOCOL):
        raise GenerateError("give the sampling settings as `sampling` or as keywords, not both")
    if batch_size < 1:
        raise GenerateError(f"--batch-size must be >= 1, got {batch_size}")
    items = as_suite_items(prompts_or_suite_items)
    plan = plan_videos(items, videos_per_prompt, flicker_oversample)
    mine = shard_plan(plan, shard)
    # The teacher's own CFG scale and the native protocol's grid come from its model.
    sampling, native, ddim_plan = sampling.for_model(bundle)
    sampler, steps, spacing, guidance_scale = sampling.sampler, sampling.steps, sampling.spacing, sampling.guidance_scale
    origin_steps, timesteps = sampling.origin_steps, list(sampling.timesteps)
    unet_kwargs = dict(getattr(bundle, "unet_kwargs", {}) or {})
    if native is not None and "fps" in native and "fps" in unet_kwargs:
        unet_kwargs["fps"] = int(native["fps"])  # the fps the teacher's script conditions on
    w_dim = _w_projection_dim(unet) if sampler == "student" else None

    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    if seed is None:
        seed = recorded_base_seed(out_dir)
    if seed is None:
        if shard[1] > 1:
            # Each process would draw its own; the launcher must agree on one (the CLI broadcasts).
            raise GenerateError("sharded generation needs an explicit base seed shared by all shards")
        seed = draw_base_seed()
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    recorded = sampling.as_record()  # the sampling settings as they are
    settings = {
        **{k: recorded[k] for k in ("sampler", "steps", "timesteps", "timestep_spacing", "guidance_scale", "cfg", "nfe")},
        "base_seed": seed,
        "model_label": model_label,
        "model": getattr(bundle, "name", None),
        "num_frames": bundle.num_frames,
        "height": bundle.height,
        "width": bundle.width,
        "fps": bundle.fps,
        "videos_per_prompt": videos_per_prompt,
        "flicker_oversample": flicker_oversample,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "batch_invariant": batch_invariant,
        "teacher_protocol": recorded["teacher_protocol"],
        "origin_steps": recorded["origin_steps"],
        "unet_kwargs": {k: v for k, v in unet_kwargs.items() if isinstance(v, (int, float, str))},
    }
    if native is not None:
        settings["native_sampler"] = {k: v for k, v in native.items() if k != "scheduler_config"}
        settings["native_sampler"]["eta"] = ddim_plan.eta
        if "scheduler_config" in native:
            settings["native_sampler"]["scheduler_config"] = native["scheduler_config"]
        settings["native_sampler"]["x0_rescaled"] = ddim_plan.x0_scale is not None
    denoiser = one_video_at_a_time(unet) if batch_invariant else unet

    done = read_manifest(out_dir)
    for rec in done.values():
        clash = {k: (rec.get(k), settings[k]) for k in RESUME_KEYS if k in rec and rec.get(k) != settings[k]}
        if clash:
            shown = "; ".join(f"{k}: folder has {a!r}, this run {b!r}" for k, (a, b) in clash.items())
            raise GenerateError(f"{out_dir} holds videos made with other settings ({shown}); use another --out or empty it")
    out_dir.mkdir(parents=True, exist_ok=True)

    # Leftover temp files of this shard's videos (a killed write); with one process, all of them.
    for v in mine:
        tmp = out_dir / (v.file[: -len(".mp4")] + TMP_SUFFIX)
        if tmp.exists():
            tmp.unlink()
    if shard[1] == 1:
        for p in out_dir.iterdir():
            if p.name.endswith(TMP_SUFFIX) and p.is_file():
                p.unlink()

    if shard[0] == 0:
        _write_json(out_dir / SUITE_INFO_NAME, suite_info(items, suite_source, videos_per_prompt, flicker_oversample))
        _write_generation_record(out_dir, settings, shard, len(plan), record)

    manifest = out_dir / manifest_name(shard)
    repair_manifest(manifest)  # a torn last line (a kill mid-append) is removed, not kept
    damaged = 0
    todo = []
    for v in mine:
        if v.file not in done or not (out_dir / v.file).is_file():
            todo.append(v)
        elif check_video_file(out_dir / v.file, done[v.file], bundle.num_frames) is not None:
            damaged += 1  # recorded, then cut or emptied: made again (same seed, same video)
            todo.append(v)
    skipped = len(mine) - len(todo)
    if progress:
        progress(skipped, len(mine))

    uncond = None
    if sampler == "teacher" and settings["cfg"]:
        uncond = bundle.text_encoder([""]).to(device=device, dtype=dtype)
    start = time.perf_counter()
    finished = skipped
    for b in range(0, len(todo), batch_size):
        batch = todo[b : b + batch_size]
        seeds = [video_seed(seed, v.prompt, v.index) for v in batch]
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        t0 = time.perf_counter()
        if batch_invariant:
            text = torch.cat([bundle.text_encoder([v.prompt]) for v in batch])
        else:
            text = bundle.text_encoder([v.prompt for v in batch])
        text = text.to(device=device, dtype=dtype)
        shape = bundle.latent_shape(len(batch))
        t_sample = time.perf_counter()
        if sampler == "student":
            out = consistency_sample(
                denoiser, text, shape, bundle.schedule, num_steps=steps, guidance_scale=guidance_scale,
                origin_steps=origin_steps, spacing=spacing, generator=generators,
                guidance_embedding_dim=w_dim, unet_kwargs=unet_kwargs,
            )
        elif ddim_plan is not None:
            out = planned_ddim_sample(
                denoiser, text, uncond if uncond is not None else text[:1], shape, ddim_plan, guidance_scale,
                generator=generators, unet_kwargs=unet_kwargs,
            )
        else:
            out = teacher_ddim_sample(
                denoiser, text, uncond if uncond is not None else text[:1], shape, bundle.schedule, num_steps=steps,
                guidance_scale=guidance_scale, spacing=spacing, generator=generators, unet_kwargs=bundle.unet_kwargs,
            )
        sampling_per_video = (time.perf_counter() - t_sample) / len(batch)
        if list(out.timesteps) != timesteps or out.nfe != settings["nfe"]:
            raise GenerateError(f"sampler used timesteps {out.timesteps} / NFE {out.nfe}, planned {timesteps} / {settings['nfe']}")
        with torch.no_grad():
            vae_dtype = next(bundle.vae.vae.parameters()).dtype if hasattr(bundle.vae, "vae") else out.latents.dtype
            # One video per decode call: the VAE then always sees the same shape, so a video's
            # pixels do not depend on how many share its batch (kernels pick their algorithm
            # by shape; a batched decode differs in the last float bits). Same cost: the VAE is
            # per-frame anyway.
            pixels = torch.cat([bundle.vae.decode(lat[None].to(vae_dtype)) for lat in out.latents])  # [B, 3, F, H, W]
            pixels = (pixels.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4).cpu()  # [B, F, 3, H, W] in [0, 1]
        per_video = (time.perf_counter() - t0) / len(batch)
        for v, s, video in zip(batch, seeds, pixels):
            write_mp4(out_dir / v.file, tensor_to_video(video), fps=bundle.fps)
            _append_record(manifest, {
                "file": v.file,
                "bytes": (out_dir / v.file).stat().st_size,  # checked on rerun (check_video_file)
                "prompt": v.prompt,
                "index": v.index,
                "seed": s,
                "base_seed": seed,
                "sampler": sampler,
                "steps": steps,
                "timesteps": out.timesteps,
                "timestep_spacing": spacing,
                "guidance_scale": float(guidance_scale),
                "teacher_protocol": settings["teacher_protocol"],
                "origin_steps": settings["origin_steps"],
                "nfe": out.nfe,
                "seconds": round(per_video, 4),  # text encoding + sampling + VAE decoding
                "sampling_seconds": round(sampling_per_video, 4),  # the denoising loop alone
                "batch_size": len(batch),
                "batch_invariant": batch_invariant,
                "model_label": model_label,
                "device": str(device),
                "dtype": settings["dtype"],
                "shard": list(shard),
            })
        finished += len(batch)
        if progress:
            progress(finished, len(mine))
    return GenerationSummary(
        out_dir=out_dir, shard=tuple(shard), base_seed=seed, planned=len(mine), skipped=skipped,
        generated=len(todo), seconds=round(time.perf_counter() - start, 3), manifest=manifest, settings=settings,
        damaged=damaged,
    )


def _write_generation_record(out_dir: Path, settings: dict, shard: tuple[int, int], n_plan: int, extra: dict | None) -> None:
    """generation.json: the first session's record; later sessions (resumes) are listed in it."""
    from bench.runs import run_record

    path = out_dir / GENERATION_NAME
    session = {"command": sys.argv, "shard_count": shard[1], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    old = None
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
    rec = run_record(
        "generate", settings,
        {"base_seed": settings["base_seed"], "per_video": SEED_DERIVATION},
        {"planned_videos": n_plan, "shard_count": shard[1], **(extra or {})},
    )
    if old is not None:
        rec["created"] = old.get("created", rec["created"])
        rec["command"] = old.get("command", rec["command"])
    rec["sessions"] = [*(old or {}).get("sessions", []), session]
    _write_json(path, rec)


# --------------------------------------------------------------------------- CLI


def default_label(suite: str, sampler: str, steps: int, teacher_protocol: str = DEFAULT_TEACHER_PROTOCOL) -> str:
    if sampler == "student":
        return f"{suite}_{steps}step"
    return f"{suite}_teacher{steps}" + ("" if teacher_protocol == DEFAULT_TEACHER_PROTOCOL else f"_{teacher_protocol}")


def _distributed_shard(device: str | None) -> tuple[Any, tuple[int, int]] | None:
    """(accelerate state, (index, count)) when started by a multi-process launcher, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # On a CPU-only machine `accelerate launch --multi_gpu` starts the processes through
    # torchrun; cpu=True makes accelerate join them with gloo (MULTI_CPU) instead of NCCL.
    cpu = device == "cpu" if device else not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    return state, (state.process_index, state.num_processes)


def generate_command(
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory (runs/<run>/) whose student (or teacher) generates."),
    suite: Optional[str] = typer.Option(None, "--suite", help="Prompt suite: vbench (VBench_full_info.json, 944 prompts) or tiny (61 prompts)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default 4 for the student, a v2 run's v2.sample_steps (16), 50 for --teacher)."),
    teacher: bool = typer.Option(False, "--teacher", help="Teacher baseline: DDIM with classifier-free guidance instead of the student."),
    config: Optional[str] = typer.Option(None, "--config", help="With --teacher and no --run: the teacher's config (tiny, ms, vc2 or a YAML path)."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help=f"Student: embedded w (default {DEFAULT_STUDENT_GUIDANCE:g}). Teacher: CFG scale (default: the teacher's own, 7.5 tiny/VC2, 9.0 MS)."),
    timestep_spacing: Optional[str] = typer.Option(None, "--timestep-spacing", help="Student: strided (default; 4 steps = 999,759,519,279) or linspace. Teacher: trailing (default) or leading."),
    teacher_protocol: str = typer.Option(DEFAULT_TEACHER_PROTOCOL, "--teacher-protocol", help="With --teacher: matched (50-step DDIM eta 0 + CFG on the students' grid) or native (the teacher's own sampler: VC2 LVDM DDIM eta 1, CFG 12, x0 rescaling, fps 28; MS its scheduler_config.json DDIM, CFG 9)."),
    origin_steps: Optional[int] = typer.Option(None, "--origin-steps", help=f"Student: L of the LCM origin grid (default: the run's distillation grid, 1000 // skip: {LCM_ORIGIN_STEPS} for v1, 200 for v2)."),
    videos_per_prompt: int = typer.Option(DEFAULT_VIDEOS_PER_PROMPT, "--videos-per-prompt", help="Videos per prompt, named {prompt}-0.mp4 .. (VBench: 5)."),
    dimension: Optional[list[str]] = typer.Option(None, "--dimension", help="Only prompts serving this dimension (repeatable)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N prompts of the suite (after --dimension), for smoke runs."),
    flicker_oversample: bool = typer.Option(False, "--flicker-oversample", help="25 videos per temporal_flickering prompt, for VBench's static filter (run on the `bench score vbench` side)."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="A custom prompt list (one per line) instead of --suite; label 'custom'."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Base seed (default: drawn from os.urandom, or the folder's recorded one on resume; always recorded)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Videos per sampler call."),
    batch_invariant: bool = typer.Option(False, "--batch-invariant", help="Denoise one video per UNet call: bit-identical videos whatever --batch-size, sharding or resume (slower)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default RUN/videos/<suite>_<N>step or RUN/videos/<suite>_teacher<N>)."),
    shard_index: Optional[int] = typer.Option(None, "--shard-index", help="This process's shard (default: accelerate's process index, else 0)."),
    shard_count: Optional[int] = typer.Option(None, "--shard-count", help="Number of shards (default: accelerate's process count, else 1)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available; accelerate's device per process)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch intra-op threads (default: torch's choice)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned file names (one per line) and exit; loads no model."),
) -> None:
    """Generate videos with VBench's naming for `bench score`: a run's student, or a teacher baseline.

    Examples: `bench generate --run runs/r1 --suite tiny --steps 4`;
    `bench generate --teacher --config tiny --suite tiny` (50-step DDIM + CFG);
    `bench generate --suite vbench --dry-run` (the 4,720 file names);
    `accelerate launch --multi_gpu --num_processes 2 -m bench generate --run runs/r1 --suite tiny`.
    Reruns skip finished videos (file + manifest record) and finish the rest.
    """
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True)

    def fail(message: str, code: int = 2) -> None:
        # bench's one error handler (bench/console.py) prints it and exits with `code`.
        raise GenerateError(message, code)

    try:
        # ---- everything that needs no model: inputs, plan, file names --------------------
        from bench.validate import check_device, number_problem

        sampler = "teacher" if teacher else "student"
        if seed is not None and number_problem(seed, 0, 2**63 - 1, integer=True):
            fail(f"--seed {seed}: {number_problem(seed, 0, 2**63 - 1, integer=True)}")
        if prompt_file is not None:
            if suite is not None:
                fail("give --suite or --prompt-file, not both")
            if dimension:
                fail("--dimension selects from a suite; a --prompt-file has no dimensions")
            items, source, suite_name = read_prompt_file(prompt_file), {"suite": "custom", "path": str(prompt_file)}, "custom"
        else:
            if suite is None:
                fail(f"choose a prompt suite with --suite ({' or '.join(SUITES)}) or give --prompt-file")
            if suite not in SUITES:
                fail(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
            items, source = load_suite(suite, dimension)
            suite_name = suite
        if limit is not None:
            items, source = limit_items(items, limit), {**source, "limit": limit}
        plan = plan_videos(items, videos_per_prompt, flicker_oversample)
        explicit_shard = shard_index is not None or shard_count is not None
        if explicit_shard:
            shard = (shard_index or 0, shard_count or 1)
            shard_plan(plan, shard)  # validates
        if dry_run:
            shown = shard_plan(plan, shard) if explicit_shard else plan
            sys.stdout.write("".join(v.file + "\n" for v in shown))
            return
        # The sampling settings, made (and validated) once: the teacher's here, a student's
        # once its run is read (the run's grid is its origin grid; a v2 run sets its steps).
        sampling = None
        if teacher:
            sampling = SamplingSettings.make(sampler, steps if steps is not None else DEFAULT_TEACHER_STEPS, guidance_scale,
                                             timestep_spacing, origin_steps, teacher_protocol)
        elif teacher_protocol != DEFAULT_TEACHER_PROTOCOL:
            fail("--teacher-protocol applies to the teacher baseline (--teacher) only")
        if batch_size < 1:
            fail(f"--batch-size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            fail(f"--threads must be >= 1, got {threads}")

        from bench.runs import RunError, read_run, student_adapter_path

        if run is not None:
            if not run.is_dir():
                fail(f"run directory not found: {run}")
            try:
                read_run(run)
            except RunError as err:
                fail(str(err))
            if config is not None:
                fail("give --run or --config, not both (a run names its own teacher)")
            if not teacher and not student_adapter_path(run).is_file():
                fail(f"{run}: no final student at {student_adapter_path(run)} (is training finished? `bench train --resume`)")
            if not teacher:
                from bench.runs import run_config
                from bench.v2 import default_sample_steps

                run_cfg = run_config(run)
                sampling = SamplingSettings.make(
                    sampler, steps if steps is not None else default_sample_steps(run_cfg, DEFAULT_STUDENT_STEPS),  # a v2 student: 16
                    guidance_scale, timestep_spacing,
                    origin_steps if origin_steps is not None else default_origin_steps(run_cfg.skip))
            model_label = str(run.resolve()) if not teacher else f"{run.resolve()} (teacher)"
            out_dir = out or run / "videos" / default_label(suite_name, sampler, sampling.steps, teacher_protocol)
        else:
            if not teacher:
                fail("--run RUN is required to generate with a student (or use --teacher --config NAME)")
            config = config or "tiny"
            model_label = f"teacher:{config}"
            out_dir = out or Path("runs") / f"teacher-{Path(config).stem}" / "videos" / default_label(suite_name, sampler, sampling.steps, teacher_protocol)
        check_out_dir(out_dir)
        try:
            check_device(device)
        except ValueError as err:
            fail(str(err))

        # ---- processes, device, models ---------------------------------------------------
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        dist = None
        if not explicit_shard:
            dist = _distributed_shard(device)
            shard = dist[1] if dist else (0, 1)
        if device is None:
            device = str(dist[0].device) if dist else ("cuda" if torch.cuda.is_available() else "cpu")

        if dist is not None:
            from accelerate.utils import broadcast_object_list

            # One base seed for all processes, decided by the main process (given, recorded on a
            # resume, or drawn) before any process writes, and sent to the others.
            chosen = None
            if dist[0].is_main_process:
                chosen = seed if seed is not None else recorded_base_seed(out_dir)
                chosen = chosen if chosen is not None else draw_base_seed()
            seed = broadcast_object_list([chosen])[0]
        elif seed is None:
            seed = recorded_base_seed(out_dir)
            if seed is None and shard[1] > 1:
                fail("--shard-count > 1 without accelerate needs --seed (every shard must use the same base seed)")

        try:
            if teacher:
                from bench.config import ConfigError, load_config
                from bench.runs import load_teacher, run_config

                try:
                    cfg = run_config(run) if run is not None else load_config(config)
                except ConfigError as err:
                    fail(str(err))
                bundle = load_teacher(cfg, device=device)
                unet = bundle.unet
            else:
                from bench.runs import load_run_student

                from bench.v2 import generation_record, sampling_student

                bundle, unet, run_cfg = load_run_student(run, device=device)
                unet, v2_record = sampling_student(run_cfg, unet), generation_record(run_cfg, sampling.steps, sampling.origin_steps, sampling.spacing)
        except (RunError, FileNotFoundError, ValueError) as err:
            fail(f"cannot load the model: {err}")
        except ImportError as err:
            fail(f"cannot load the model (missing component: {err})")

        # ---- generate ------------------------------------------------------------------
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        desc = f"{out_dir.name}" + (f" shard {shard[0]}/{shard[1]}" if shard[1] > 1 else "")
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=False,
        ) as bar:
            task = bar.add_task(escape(desc), total=None)

            def on_progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            summary = generate_videos(
                bundle, unet, items, out_dir, sampling=sampling,
                videos_per_prompt=videos_per_prompt, seed=seed, batch_size=batch_size, shard=shard,
                progress=on_progress, model_label=model_label,
                flicker_oversample=flicker_oversample, suite_source=source, batch_invariant=batch_invariant,
                record={"suite": suite_name, "run": str(run) if run else None, "dimensions": dimension or None, "limit": limit,
                        **(v2_record if not teacher else {})},
            )
        console.print(
            f"[green]{escape(str(out_dir))}[/]: {summary.generated} generated"
            + (f" ({summary.damaged} found damaged and made again)" if summary.damaged else "")
            + f", {summary.skipped} already done "
            f"({summary.planned} in this shard), base seed {summary.base_seed}, {summary.settings['nfe']} NFE per video"
        )
        if dist is not None:
            dist[0].wait_for_everyone()
            if dist[0].is_main_process:
                have = read_manifest(out_dir)
                missing = [v.file for v in plan if v.file not in have or not (out_dir / v.file).is_file()]
                console.print(f"all shards: {len(plan) - len(missing)}/{len(plan)} videos complete")
    finally:
        _end_distributed()


def _end_distributed() -> None:
    # Tear the gloo/NCCL group down explicitly: torch warns about (and may hang on) a group
    # left to the interpreter's exit.
    if "torch.distributed" not in sys.modules:  # e.g. --dry-run: never import torch for this
        return
    try:
        import torch.distributed as td

        if td.is_available() and td.is_initialized():
            td.destroy_process_group()
    except Exception:  # noqa: BLE001 - shutdown must never mask the command's own result
        pass


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
