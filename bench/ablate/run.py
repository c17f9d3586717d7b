"""Orchestration: the job list, its measured cost model and submission order, the worker pool
and the resume state."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.config import ConfigError
from bench.validate import json_safe
from bench.ablate.spec import AblationError, AblationSpec, SHARED_STEPS_DIR, TEACHER, model_name
from bench.ablate.job import _suite_items, run_job
from bench.ablate.document import write_ablation_report


def plan_entries(spec: AblationSpec) -> list[dict]:
    """One job per (variant, training seed) and one for the teacher. `name` is the job's run
    directory, `model` the row of the report it belongs to."""
    if spec.train_seeds is None:
        entries = [{"name": model_name(v), "model": model_name(v), **v} for v in spec.variants]
    else:
        entries = [{"name": f"{model_name(v)}-seed{s}", "model": model_name(v), "train_seed": s, **v}
                   for v in spec.variants for s in spec.train_seeds]
    return entries + [{"name": TEACHER, "model": TEACHER, "variant": TEACHER}]


# The cost model that orders the jobs (longest first), in seconds on one CPU thread, measured on
# the tiny world side by side (benchmarks/results/speed_memory.json, a quiet 2-core machine):
# one training sample-step of VCM at batch 8 (~1.2 s per step), the share each reward model adds
# to it (T2V-Turbo with both: ~1.35x VCM), and one network evaluation of one video at 32 videos
# per call (the teacher's 50-step CFG: 100 NFE per video). Only the order depends on them.
# The shared steps (`bench.step_cache`) make every training after the first cheaper by the same
# seconds per step (its batch and teacher pass are read), so they leave this order unchanged:
# the longest training starts first, beside the teacher's generation, and computes them.
TRAIN_SECONDS_PER_SAMPLE = 0.15
REWARD_SHARE_OF_STEP = 0.17
SECONDS_PER_VIDEO_NFE = 0.018


def estimated_job_seconds(spec: AblationSpec, entry: dict, videos: int) -> float:
    """A job's expected seconds: training (students) + generating `videos` (+ scoring, small)."""
    if entry["name"] == TEACHER or entry.get("variant") == TEACHER:
        nfe = spec.teacher_steps * (2 if (spec.teacher_cfg is None or spec.teacher_cfg > 1) else 1)
        return videos * nfe * SECONDS_PER_VIDEO_NFE
    from bench.config import load_config

    overrides = list(spec.train_overrides) + [f"variant={entry['variant']}"]
    cfg = load_config(spec.train_config, overrides)
    rewards = sum(part in ("img", "vid") for part in entry["variant"].split("+"))
    train = cfg.steps * cfg.batch_size * TRAIN_SECONDS_PER_SAMPLE * (1 + REWARD_SHARE_OF_STEP * rewards)
    return train + videos * spec.student_steps * SECONDS_PER_VIDEO_NFE


def submission_order(spec: AblationSpec, entries: Sequence[dict]) -> list[dict]:
    """The jobs longest first (LPT), so that the workers finish together: the 50-step teacher's
    generation is about as long as the longest training and no longer waits for the trainings
    before it starts (a wall-time tail that one worker would run alone). The report's order is
    the spec's, whatever the order the jobs ran in."""
    try:
        videos = len(_suite_items(spec)[0]) * spec.videos_per_prompt
        cost = {e["name"]: estimated_job_seconds(spec, e, videos) for e in entries}
    except Exception:  # noqa: BLE001 - an estimate never stops an ablation: the spec's order then
        return list(entries)
    return sorted(entries, key=lambda e: -cost[e["name"]])


# glibc's allocator returns every large freed block to the system and faults its pages in again
# at the next allocation: a CPU job that allocates the same activations at every UNet call
# spent 3x the system time and ~6x the page faults (benchmarks: 1.9M vs 0.3M faults for 100
# UNet calls) for nothing. The ablation's workers keep freed memory (up to 1 GiB per block)
# for reuse instead; values the user has set are kept. Allocation never changes a result.
WORKER_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**30)}


def worker_context():
    """The multiprocessing context of the ablation's workers (spawn: fresh interpreters, which
    read the allocator settings of `WORKER_ENVIRONMENT` as they start). Returns (context, the
    environment entries they run with)."""
    import multiprocessing as mp
    import os

    for key, value in WORKER_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    return mp.get_context("spawn"), {key: os.environ[key] for key in WORKER_ENVIRONMENT}


def record_start(spec: Any, keep: Sequence[str], defaults: Mapping[str, Any] | None = None) -> tuple[Path, dict]:
    """Write WORK_DIR/ablation.json for a (re)started ablation, after checking that a previous
    start used the same settings (but for `keep`, which may change between resumes): a resume
    with other settings would mix two designs in one report. Returns (its path, the spec as a dict)."""
    from bench.runs import run_record, write_json_atomic

    Path(spec.work_dir).mkdir(parents=True, exist_ok=True)
    state_path = Path(spec.work_dir) / "ablation.json"
    spec_dict = dataclasses.asdict(spec)
    if state_path.is_file():
        previous = json.loads(state_path.read_text()).get("spec", {})
        defaults = defaults or {}
        changed = sorted(k for k in spec_dict if k not in keep and previous.get(k, defaults.get(k)) != spec_dict[k])
        if changed:
            raise ConfigError(f"{state_path}: this ablation was started with different settings ({', '.join(changed)}); "
                              "use another work_dir or the same config")
    write_json_atomic(state_path, run_record("ablation", spec_dict, {"generation_seed": spec.seed}, {"spec": spec_dict}))
    return state_path, spec_dict


def run_ablation(spec: AblationSpec, console: Any = None) -> list[Path]:
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    entries = plan_entries(spec)
    from bench.runs import write_json_atomic

    # A key added since the ablation was started counts as its default, which it ran with.
    state_path, spec_dict = record_start(spec, keep=("jobs", "threads_per_job", "bootstrap", "report"),
                                         defaults=dataclasses.asdict(AblationSpec()))
    ctx, worker_env = worker_context()
    manager = ctx.Manager()
    queue = manager.Queue()
    results: dict[str, dict] = {}
    t0 = time.time()
    with Progress(TextColumn("[bold]{task.description:<24}"), TextColumn("{task.fields[stage]:<9}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        tasks = {e["name"]: progress.add_task(e["name"], total=None, stage="queued") for e in entries}
        # Longest jobs first (`submission_order`): the teacher's generation starts at once.
        with ProcessPoolExecutor(max_workers=spec.jobs, mp_context=ctx) as pool:
            futures = {pool.submit(run_job, spec_dict, e, queue): e for e in submission_order(spec, entries)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                while not queue.empty():
                    name, stage, n_done, total = queue.get()
                    progress.update(tasks[name], stage=stage, completed=n_done, total=total)
                for f in done:
                    e = futures[f]
                    try:
                        results[e["name"]] = {**e, **f.result()}
                    except Exception as err:  # noqa: BLE001 - report which job failed, keep finished work
                        for other in pending:
                            other.cancel()
                        from bench.console import exit_code

                        code = exit_code(err)
                        # A known error (bad input, a failed run) is its message; an unexpected one
                        # (a bug) keeps the worker's traceback tail, which the parent cannot show otherwise.
                        detail = "" if code is not None else "\n" + "".join(traceback.format_exception(err))[-2500:]
                        raise AblationError(f"{e['name']} failed: {err}{detail}", code=code or 1) from err
                    progress.update(tasks[e["name"]], stage="done")
    entries_done = [results[e["name"]] for e in entries]
    # Every training is finished: the shared steps are no longer needed (tens of MB).
    shutil.rmtree(Path(spec.work_dir) / SHARED_STEPS_DIR, ignore_errors=True)
    write_json_atomic(state_path, {**json.loads(state_path.read_text()), "finished": True, "models": json_safe(entries_done),
                                   "wall_seconds": round(time.time() - t0, 1), "worker_environment": worker_env})
    return write_ablation_report(spec, entries_done)
