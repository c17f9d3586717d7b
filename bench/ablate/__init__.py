"""`bench ablate`: the paper's ablation (Tables 2 and 3) end to end, resumably.

For each variant (VCM, VCM+R_img, VCM+R_vid, T2V-Turbo with ViCLIP, T2V-Turbo with
InternVid2): train -> generate at n steps -> score. For the teacher: generate with 50-step
DDIM + CFG -> score. Every model generates from the same per-video seeds, so comparisons
are paired. Then one report: the 16 dimensions, Total / Quality / Semantic with 95%
bootstrap confidence intervals over prompts, each variant's difference to VCM with its
interval, a speed table (NFE, seconds per video, speedup over the teacher) and plots.

Jobs (one per model) run in parallel worker processes (`jobs`, one per CPU core or GPU);
each stage skips what is already complete, so an interrupted ablation resumes.
"""

from __future__ import annotations

# The package re-exports every name its modules define (the public import path is bench.ablate),
# and the config folder its specs live in.
from bench.config import CONFIG_DIR  # noqa: F401
from bench.ablate.spec import AblationError, AblationSpec, SHARED_STEPS_DIR, TEACHER, load_spec, model_name  # noqa: F401
from bench.ablate.statistics import bootstrap_composites, prompt_of, speed_rows  # noqa: F401
from bench.ablate.job import _labels, _score, _suite_items, generation_device, run_job  # noqa: F401
from bench.ablate.document import _ablation_markdown, _ci_plot, _fmt_ci, _num, _run_config, _speed_plot, _verdict, merge_seeds, speed_markdown, write_ablation_report  # noqa: F401
from bench.ablate.run import REWARD_SHARE_OF_STEP, SECONDS_PER_VIDEO_NFE, TRAIN_SECONDS_PER_SAMPLE, estimated_job_seconds, plan_entries, run_ablation, submission_order  # noqa: F401
from bench.ablate.cli import register  # noqa: F401
