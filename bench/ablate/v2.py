"""`bench ablate` for T2V-Turbo-v2: v1 beside v2 with and without motion guidance, resumably.

An ablation spec with `kind: v2` (`bench/configs/ablate_tiny_v2.yaml`) has *rows* instead of
v1's variants. A row is one trained student (or the teacher) and the sampling steps it is
generated at; each (row, steps) pair is one model of the report. The stages:

1. `bench preprocess` builds the v2 teacher cache once, at WORK_DIR/cache, split over the
   workers (`--shard i/n`); every v2 row trains from it (its `v2.cache` points there).
2. Per row: train (v1 rows with the live teacher, v2 rows from the cache), then per steps
   value generate (a v2 student with its motion-condition schedule, on its own origin grid)
   and score. The teacher generates with 50-step DDIM + CFG.
3. One report: Total / Quality / Semantic, dynamic degree and motion smoothness with paired
   bootstrap intervals over prompts, and the differences the spec names (`contrasts`: with
   minus without motion guidance at each steps value, ...), on the same resamples.

Every stage skips what is complete (a finished training, a generated video, a score), so an
interrupted ablation resumes. A row may name `reuse: DIR`, a finished run of the same config
(e.g. the v1 ablation's): it is copied in instead of trained again, and the report says so.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from bench.ablate.document import _fmt_ci, _num, report_contents, run_records, write_report_files
from bench.ablate.run import record_start, worker_context
from bench.ablate.spec import TEACHER, read_spec
from bench.config import ConfigError
from bench.generate import DEFAULT_STUDENT_GUIDANCE
from bench.validate import json_safe

KIND = "v2"
# The motion dimensions the report puts beside the composites (VBench's names).
MOTION_DIMENSIONS = ("dynamic_degree", "motion_smoothness")


@dataclass
class V2AblationSpec:
    """A v2 ablation: the cache to build, the rows to train and sample, where to write."""

    kind: str = KIND
    name: str = "tiny-ablation-v2"
    # The cache: built with this config and these overrides (its v2 block; `v2.cache` is set
    # to WORK_DIR/cache). Every v2 row must train with the same cache settings.
    preprocess_config: str = "tiny_v2"
    preprocess_overrides: list[str] = field(default_factory=list)
    # name, label, train_config, overrides (key=value), steps (list), reuse (a finished run to
    # copy in); the teacher row: {name: teacher, teacher: true, steps: [50]}.
    rows: list[dict] = field(default_factory=list)
    # (a, b, label): the report's differences a - b, each a model name `<row>@<steps>`.
    contrasts: list[list[str]] = field(default_factory=list)
    reference: str | None = None  # the model the all-pairs analysis and the leakage audit centre on
    guidance_scale: float = DEFAULT_STUDENT_GUIDANCE
    teacher_config: str = "tiny"
    suite: str = "tiny"
    dimensions: list[str] | None = None  # a subset of the suite (None: all 16 dimensions)
    limit: int | None = None  # only the first N prompts: smoke runs and tests
    benchmark: str = "tiny"
    videos_per_prompt: int = 5
    seed: int = 2024
    generate_batch: int = 32
    jobs: int = 2
    threads_per_job: int = 1
    bootstrap: int = 2000
    work_dir: str = "runs/ablate-tiny-v2"
    report: str = "reports/tiny-ablation-v2"

    # -- derived -------------------------------------------------------------------------------

    @property
    def cache_dir(self) -> Path:
        return Path(self.work_dir) / "cache"

    def models(self) -> list[str]:
        return [model_name(r["name"], s) for r in self.rows for s in r["steps"]]

    def row_overrides(self, row: dict) -> list[str]:
        """The row's training overrides; a v2 row's cache is the ablation's."""
        extra = list(row.get("overrides", []))
        if is_v2_config(row.get("train_config", self.preprocess_config), extra):
            extra.append(f"v2.cache={self.cache_dir}")
        return extra

    def row_config(self, row: dict):
        from bench.config import load_config

        return load_config(row.get("train_config", self.preprocess_config), self.row_overrides(row))

    def cache_config(self):
        from bench.config import load_config

        return load_config(self.preprocess_config, list(self.preprocess_overrides) + [f"v2.cache={self.cache_dir}"])

    def validate(self) -> None:
        from bench.scoring.registry import BENCHMARKS, names_text
        from bench.validate import number_problem

        errors: list[str] = []
        if self.kind != KIND:
            errors.append(f"kind={self.kind!r} (a v2 ablation has kind: v2)")
        numbers = {n: (1, None, True) for n in ("videos_per_prompt", "jobs", "threads_per_job", "bootstrap", "generate_batch")}
        numbers.update(seed=(0, 2**63 - 1, True), guidance_scale=(0, None, False))
        for n, (lo, hi, integer) in numbers.items():
            problem = number_problem(getattr(self, n), lo, hi, integer=integer)
            if problem:
                errors.append(f"{n}={getattr(self, n)!r} {problem}")
        if self.limit is not None and (not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1):
            errors.append(f"limit={self.limit!r} must be a whole number >= 1 (or absent: every prompt)")
        if self.suite not in ("tiny", "vbench"):
            errors.append(f"suite={self.suite!r} (tiny or vbench)")
        if self.benchmark not in BENCHMARKS:
            errors.append(f"benchmark={self.benchmark!r} ({names_text()})")
        for key in ("preprocess_overrides",):
            value = getattr(self, key)
            if not isinstance(value, list) or not all(isinstance(o, str) for o in value):
                errors.append(f"{key} must be a list of key=value strings")
        if not isinstance(self.rows, list) or not self.rows or not all(isinstance(r, dict) for r in self.rows):
            raise ConfigError("invalid v2 ablation config: rows must be a non-empty list of mappings")
        allowed = {"name", "label", "train_config", "overrides", "steps", "reuse", "teacher"}
        names = []
        for r in self.rows:
            where = f"row {r.get('name')!r}"
            unknown = sorted(set(r) - allowed)
            if unknown:
                errors.append(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
            if not isinstance(r.get("name"), str) or not r["name"] or "@" in r["name"] or "/" in r["name"]:
                errors.append(f"{where}: name must be a non-empty string without '@' or '/'")
            names.append(r.get("name"))
            steps = r.get("steps")
            if not isinstance(steps, list) or not steps or len(set(map(str, steps))) != len(steps) or \
                    not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps):
                errors.append(f"{where}: steps must be a non-empty list of distinct whole numbers >= 1")
            if not isinstance(r.get("overrides", []), list) or not all(isinstance(o, str) for o in r.get("overrides", [])):
                errors.append(f"{where}: overrides must be a list of key=value strings")
            if r.get("teacher") and (r.get("name") != TEACHER or "overrides" in r or "train_config" in r):
                errors.append(f"{where}: the teacher row is named {TEACHER!r} and has no training config or overrides")
            if r.get("name") == TEACHER and not r.get("teacher"):
                errors.append(f"{where}: the name {TEACHER!r} is the teacher row's (teacher: true)")
        if len(set(names)) != len(names):
            errors.append("two rows have the same name")
        if errors:
            raise ConfigError("invalid v2 ablation config: " + "; ".join(errors))
        # Every training config, and the cache's, checked now rather than in a worker minutes later.
        try:
            cache_cfg = self.cache_config()
        except ConfigError as err:
            raise ConfigError(f"invalid v2 ablation config: preprocess_config/preprocess_overrides: {err}") from None
        if not is_v2_config(self.preprocess_config, self.preprocess_overrides):
            raise ConfigError(f"invalid v2 ablation config: preprocess_config {self.preprocess_config!r} has no v2 block "
                              "(the cache is built from a v2 config, e.g. tiny_v2)")
        from bench.v2 import V2Settings, cache_identity

        want = cache_identity(cache_cfg, V2Settings.from_config(cache_cfg), V2Settings.from_config(cache_cfg).videos)
        for r in self.rows:
            if r.get("teacher"):
                continue
            try:
                cfg = self.row_config(r)
            except ConfigError as err:
                errors.append(f"row {r['name']!r}: {err}")
                continue
            if cfg.v2:
                s = V2Settings.from_config(cfg)
                got = cache_identity(cfg, s, s.videos)
                diff = sorted(k for k in want if want[k] != got.get(k))
                if diff:
                    errors.append(f"row {r['name']!r} would need another cache than the ablation builds ({', '.join(diff)} differ)")
        models = set(self.models())
        for c in self.contrasts:
            if not (isinstance(c, list) and len(c) == 3 and all(isinstance(x, str) for x in c)):
                errors.append(f"contrast {c!r} must be [a, b, label]")
            elif c[0] not in models or c[1] not in models:
                errors.append(f"contrast {c[:2]!r}: models are {', '.join(sorted(models))}")
        if self.reference is not None and self.reference not in models:
            errors.append(f"reference={self.reference!r}: models are {', '.join(sorted(models))}")
        if errors:
            raise ConfigError("invalid v2 ablation config: " + "; ".join(errors))


def is_v2_spec(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("kind") == KIND


def spec_file_is_v2(path: str | Path) -> bool:
    """Whether an ablation YAML is a v2 spec (`kind: v2`); a file that cannot be read is left to
    the v1 loader, which names the problem."""
    try:
        return is_v2_spec(yaml.safe_load(Path(path).read_text()))
    except (OSError, yaml.YAMLError):
        return False


def is_v2_config(name: str, overrides: Sequence[str]) -> bool:
    from bench.config import load_config

    try:
        return bool(load_config(name, list(overrides)).v2)
    except ConfigError:
        return False


def model_name(row: str, steps: int) -> str:
    return f"{row}@{steps}"


def load_v2_spec(path: str | Path, overrides: dict | None = None) -> V2AblationSpec:
    return read_spec(Path(path), V2AblationSpec, overrides)


# --- the jobs (worker processes) ----------------------------------------------------------------


def preprocess_job(spec_dict: dict, shard: tuple[int, int], queue: Any = None) -> dict:
    """One worker's part of the cache (`bench preprocess --shard i/n`)."""
    import torch

    from bench.preprocess import preprocess

    spec = V2AblationSpec(**spec_dict)
    torch.set_num_threads(spec.threads_per_job)
    t0 = time.time()
    summary = preprocess(spec.cache_config(), spec.cache_dir, shard, device="cpu" if not torch.cuda.is_available() else None)
    return {**summary, "wall_seconds": round(time.time() - t0, 1)}


def _reuse(row: dict, run_dir: Path, planned: dict | None) -> str | None:
    """Copy a finished run of the same config into `run_dir`; returns why not, or None."""
    src = Path(row["reuse"])
    if not (src / "run.json").is_file():
        return f"{src} is not a run directory here"
    record = json.loads((src / "run.json").read_text())
    if planned is not None:
        if record.get("status") != "finished":
            return f"{src} is not finished"
        recorded = record.get("config", {})
        diff = sorted(k for k in set(planned) | set(recorded) if planned.get(k) != recorded.get(k))
        if diff:
            return f"{src} was trained with another config ({', '.join(diff)})"
    tmp = run_dir.with_name(f".{run_dir.name}.copy")
    shutil.rmtree(tmp, ignore_errors=True)
    # Checkpoints are not needed to sample or score; the TensorBoard files are the source's.
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    (tmp / "reused_from.json").write_text(json.dumps({"source": str(src.resolve()), "git": record.get("git")}, indent=2))
    tmp.rename(run_dir)
    return None


def model_job(spec_dict: dict, row: dict, queue: Any = None) -> list[dict]:
    """Train (students), then generate and score at each of the row's steps. Skips what is complete."""
    import torch

    from bench.ablate import _score
    from bench.config import config_to_dict, load_config
    from bench.generate import default_label, default_origin_steps, generate_videos
    from bench.runs import load_run_student, load_teacher, read_run, run_record, write_json_atomic

    spec = V2AblationSpec(**spec_dict)
    torch.set_num_threads(spec.threads_per_job)
    name = row["name"]
    run_dir = Path(spec.work_dir) / name
    teacher = bool(row.get("teacher"))
    device = "cpu" if not torch.cuda.is_available() else None

    def report(stage: str, done: int, total: int) -> None:
        if queue is not None:
            queue.put((name, stage, done, total))

    t0 = time.time()
    cfg = load_config(spec.teacher_config) if teacher else spec.row_config(row)
    planned = None if teacher else config_to_dict(cfg)
    reused = None
    if row.get("reuse") and not run_dir.exists():
        reused = _reuse(row, run_dir, planned)
        reused = {"source": row["reuse"], "used": reused is None, **({"why_not": reused} if reused else {})}
    timings: dict[str, Any] = {"reuse": reused} if reused else {}
    if teacher:
        if not (run_dir / "run.json").is_file():
            write_json_atomic(run_dir / "run.json", run_record("teacher", config_to_dict(cfg), {"generation_seed": spec.seed},
                                                               {"status": "finished"}))
        bundle = load_teacher(cfg, device=device or "cuda")
        unet = bundle.unet
    else:
        status = read_run(run_dir).get("status") if (run_dir / "run.json").is_file() else None
        if status is not None:
            recorded = read_run(run_dir).get("config", {})
            diff = sorted(k for k in set(planned) | set(recorded) if planned.get(k) != recorded.get(k))
            if diff:
                raise ConfigError(f"{run_dir} holds a run with another config ({', '.join(diff)}); use another work_dir")
        if status != "finished":
            from bench.train import TENSORBOARD_DIR, train

            train(cfg, run_dir, resume=status is not None, device=device, on_step=lambda step, logs: report("train", step, cfg.steps),
                  tracker_dir=Path(spec.work_dir) / TENSORBOARD_DIR)
        timings["train_seconds"] = float(read_run(run_dir).get("train_seconds", time.time() - t0))
        bundle, unet, cfg = load_run_student(run_dir, device=device or "cuda")
    from bench.ablate import _suite_items

    items, source = _suite_items(spec)  # type: ignore[arg-type] - it reads suite, dimensions and limit
    out = []
    for steps in row["steps"]:
        sampler = "teacher" if teacher else "student"
        label = default_label(spec.suite, sampler, steps)
        videos = run_dir / "videos" / label
        extra: dict[str, Any] = {"suite": spec.suite, "ablation": spec.name}
        sample_unet, origin = unet, None
        if not teacher:
            from bench.v2 import generation_record, sampling_student

            origin = default_origin_steps(cfg.skip)
            # A v2 student samples with its motion-condition schedule (v2.inference_*), as
            # `bench generate --run` does; recorded in generation.json.
            sample_unet = sampling_student(cfg, unet)
            extra.update(generation_record(cfg, steps, origin))
        t1 = time.time()
        generate_videos(bundle, sample_unet, items, videos, sampler=sampler, steps=steps,
                        guidance_scale=None if teacher else spec.guidance_scale, videos_per_prompt=spec.videos_per_prompt,
                        seed=spec.seed, batch_size=spec.generate_batch, progress=lambda d, t: report(f"gen {steps}", d, t),
                        model_label=str(run_dir), suite_source=source, record=extra, origin_steps=origin)
        gen_s = round(time.time() - t1, 1)
        t2 = time.time()
        scores = run_dir / "scores" / f"{label}-{spec.benchmark}"
        _score(spec, videos, scores, report, zoo=cfg.weights.get("tiny_zoo"))  # type: ignore[arg-type]
        out.append({"name": model_name(name, steps), "row": name, "steps": steps, "run_dir": str(run_dir),
                    "videos": str(videos), "scores": str(scores), "teacher": teacher,
                    "timings": {**timings, "generate_seconds": gen_s, "score_seconds": round(time.time() - t2, 1)}})
    job_path = run_dir / "ablation_job.json"
    write_json_atomic(job_path, json_safe({"models": out}))
    return out


# --- orchestration ----------------------------------------------------------------------------------


def _row_cost(spec: V2AblationSpec, row: dict) -> float:
    """A rough order for the jobs (longest first): training steps plus sampling NFE; a row whose
    run is already there (finished, or reused) only samples (a resumed ablation starts the
    trainings still to do first)."""
    run_json = Path(spec.work_dir) / row["name"] / "run.json"
    done = run_json.is_file() and json.loads(run_json.read_text()).get("status") == "finished"
    if row.get("teacher"):
        return float(sum(row["steps"])) if done else 100.0 * sum(row["steps"])
    if done or (row.get("reuse") and (Path(row["reuse"]) / "run.json").is_file()):
        return float(sum(row["steps"]))
    try:
        steps = spec.row_config(row).steps
    except ConfigError:
        steps = 0
    return 3.0 * steps + sum(row["steps"])


def run_v2_ablation(spec: V2AblationSpec, console: Any = None) -> list[Path]:
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.ablate import AblationError
    from bench.runs import write_json_atomic
    from bench.v2 import read_manifest

    state_path, spec_dict = record_start(spec, keep=("jobs", "threads_per_job", "bootstrap", "report", "contrasts", "reference"))
    ctx, worker_env = worker_context()
    manager = ctx.Manager()
    queue = manager.Queue()
    t0 = time.time()
    results: dict[str, list[dict]] = {}
    stage_seconds: dict[str, float] = {}

    def drain(progress, tasks):
        while not queue.empty():
            name, stage, n_done, total = queue.get()
            if name in tasks:
                progress.update(tasks[name], stage=stage, completed=n_done, total=total)

    def run_pool(progress, tasks, submissions):
        with ProcessPoolExecutor(max_workers=spec.jobs, mp_context=ctx) as pool:
            futures = {pool.submit(fn, spec_dict, arg, queue): key for key, fn, arg in submissions}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                drain(progress, tasks)
                for f in done:
                    key = futures[f]
                    try:
                        results[key] = f.result()
                    except Exception as err:  # noqa: BLE001 - say which job failed; finished work stays
                        for other in pending:
                            other.cancel()
                        from bench.console import exit_code

                        code = exit_code(err)
                        detail = "" if code is not None else "\n" + "".join(traceback.format_exception(err))[-2500:]
                        raise AblationError(f"{key} failed: {err}{detail}", code=code or 1) from err
                    if key in tasks:
                        progress.update(tasks[key], stage="done")

    with Progress(TextColumn("[bold]{task.description:<24}"), TextColumn("{task.fields[stage]:<9}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        # Stage 1: the cache, split over the workers (a complete cache is not touched).
        cache_task = progress.add_task("cache", total=None, stage="preprocess")
        ts = time.time()
        complete = (spec.cache_dir / "cache.json").is_file() and read_manifest(spec.cache_dir).get("status") == "complete"
        if not complete:
            n = spec.jobs
            run_pool(progress, {}, [(f"preprocess {i}/{n}", preprocess_job, (i, n)) for i in range(n)])
        if read_manifest(spec.cache_dir).get("status") != "complete":
            raise AblationError(f"the teacher cache {spec.cache_dir} is not complete after preprocessing")
        stage_seconds["preprocess"] = round(time.time() - ts, 1)
        progress.update(cache_task, stage="done", total=1, completed=1)
        # Stage 2: the rows, longest first.
        ts = time.time()
        tasks = {r["name"]: progress.add_task(r["name"], total=None, stage="queued") for r in spec.rows}
        order = sorted(spec.rows, key=lambda r: -_row_cost(spec, r))
        run_pool(progress, tasks, [(r["name"], model_job, r) for r in order])
        stage_seconds["rows"] = round(time.time() - ts, 1)
    models = [m for r in spec.rows for m in results[r["name"]]]
    write_json_atomic(state_path, {**json.loads(state_path.read_text()), "finished": True, "models": json_safe(models),
                                   "stage_seconds": stage_seconds, "wall_seconds": round(time.time() - t0, 1),
                                   "worker_environment": worker_env})
    return write_v2_report(spec, models)


# --- the report ------------------------------------------------------------------------------------


def v2_statistics(spec: V2AblationSpec, results: dict[str, Any]) -> dict[str, Any]:
    """Per model: each metric (composites, the motion dimensions) with its 95% interval; per
    contrast: a - b with its interval, on the same paired resamples of prompts."""
    from bench.report.statistics import COMPOSITES, bootstrap, build_design, percentile_interval

    design = build_design({name: [m] for name, m in results.items()})
    samples = bootstrap(design, spec.bootstrap, spec.seed)
    metrics = [*COMPOSITES, *MOTION_DIMENSIONS]
    per_model = {name: {k: percentile_interval(samples[name][k]) if k in samples[name] else None for k in metrics}
                 for name in design.names}
    contrasts = []
    for a, b, label in spec.contrasts:
        row = {"a": a, "b": b, "label": label}
        for k in metrics:
            if k in samples[a] and k in samples[b]:
                row[k] = percentile_interval(np.asarray(samples[a][k]) - np.asarray(samples[b][k]))
        contrasts.append(row)
    return {"models": per_model, "contrasts": contrasts, "metrics": metrics}


def write_v2_report(spec: V2AblationSpec, models: Sequence[dict]) -> list[Path]:

    from bench.ablate import speed_rows
    from bench.report import build_report, load_results_folder
    from bench.report.compare import analyse, markdown_sections

    results = {m["name"]: load_results_folder(Path(m["scores"]), name=m["name"]) for m in models}
    labels = {r["name"]: r.get("label", r["name"]) for r in spec.rows}
    by_name = {m["name"]: m for m in models}
    report = build_report(list(results.values()), {"row": [by_name[n]["row"] for n in results],
                                                  "steps": [by_name[n]["steps"] for n in results]})
    table = report.table.copy()
    stats = v2_statistics(spec, results)
    for k in stats["metrics"]:
        table[f"{k}_ci_low"] = [(stats["models"][n][k] or (math.nan, math.nan))[0] for n in table["model"]]
        table[f"{k}_ci_high"] = [(stats["models"][n][k] or (math.nan, math.nan))[1] for n in table["model"]]
    speed = {r["model"]: r for r in speed_rows([{**m, "name": (TEACHER if m["teacher"] else m["name"])} for m in models])}
    speed = {(by_name_key): v for by_name_key, v in speed.items()}
    teacher_name = next((m["name"] for m in models if m["teacher"]), None)
    if teacher_name is not None and TEACHER in speed:
        speed[teacher_name] = {**speed.pop(TEACHER), "model": teacher_name}
    for key in ("nfe", "sampling_seconds_per_video", "seconds_per_video", "speedup_vs_teacher", "nfe_limit"):
        table[key] = [speed.get(n, {}).get(key, math.nan) for n in table["model"]]
    values = {r["model"]: r for r in table.to_dict("records")}
    for c in stats["contrasts"]:
        for k in stats["metrics"]:
            # The table is in points (x100), as the intervals are.
            c[f"{k}_difference"] = float(values[c["a"]].get(k, math.nan)) - float(values[c["b"]].get(k, math.nan))
    configs = {}
    for m in models:
        path = Path(m["run_dir"]) / "run.json"
        configs[m["name"]] = None if m["teacher"] else json.loads(path.read_text()).get("config")
    analysis = analyse({n: [r] for n, r in results.items()}, spec.bootstrap, spec.seed, configs, reference=spec.reference)

    prefix = Path(spec.report)

    def sibling(suffix: str) -> Path:
        return prefix.with_name(prefix.name + suffix)

    paths = {"csv": sibling(".csv"), "md": sibling(".md"), "json": sibling(".json"), "motion": sibling("_motion.png"),
             "dimensions": sibling("_dimensions.png"), "composites": sibling("_composites.png"), "pairs": sibling("_pairs.png"),
             "pairs_csv": sibling("_pairs.csv")}
    markdown = _markdown(spec, table, stats, models, labels, paths, markdown_sections(analysis))
    contents = {
        **report_contents(spec, paths, table, markdown, models, stats, speed, analysis, report),
        paths["motion"]: _motion_plot(table, labels),
    }
    # The report travels without runs/: the spec, the cache's record and each run's record
    # and training log go beside it.
    runs_dir = sibling("_runs")
    if (spec.cache_dir / "cache.json").is_file():
        contents[runs_dir / "cache.json"] = (spec.cache_dir / "cache.json").read_bytes()
    state = Path(spec.work_dir) / "ablation.json"
    if state.is_file():
        contents[runs_dir / "ablation.json"] = state.read_bytes()
    rows = {m["row"]: m["run_dir"] for m in models}
    contents.update(run_records(runs_dir, list(rows.items()), ("run.json", "train_log.csv", "reused_from.json")))
    return write_report_files(contents)


def _markdown(spec, table, stats, models, labels, paths, statistics: Sequence[str]) -> str:
    from bench.report import VBENCH_DIMENSIONS, markdown_table

    recs = {r["model"]: r for r in table.to_dict("records")}

    def ci(name, k):
        return _fmt_ci(stats["models"][name].get(k))

    reused = {m["row"]: m["timings"].get("reuse") for m in models if m["timings"].get("reuse")}
    lines = [f"# {spec.name}: T2V-Turbo-v2 ablation (motion guidance, data decoupling, 4 and 16 steps)", "",
             f"Suite `{spec.suite}`, benchmark `{spec.benchmark}`, {spec.videos_per_prompt} videos per prompt, generation seed "
             f"{spec.seed} (the same per-video seeds for every model). Students sample with the embedded w = {spec.guidance_scale}, "
             "v1 on its origin grid (L = 1000 // k), v2 on its own with its motion-condition schedule; the teacher with "
             + "/".join(str(s) for r in spec.rows if r.get("teacher") for s in r["steps"]) + "-step DDIM + CFG. "
             f"The v2 rows train from one teacher cache (`bench preprocess`, `{spec.cache_dir}`). Run directories: "
             f"`{spec.work_dir}/<row>/`. A model is `<row>@<sampling steps>`.", "", "## Rows", "",
             "| row | what | training config | overrides |", "|:---|:---|:---|:---|"]
    for r in spec.rows:
        lines.append(f"| {r['name']} | {labels[r['name']]} | {'—' if r.get('teacher') else r.get('train_config', spec.preprocess_config)} | "
                     f"{' '.join('`' + o + '`' for o in r.get('overrides', [])) or '—'} |")
    for row, info in reused.items():
        lines += ["", f"Row `{row}` " + (f"was copied from the finished run `{info['source']}` (same config): its training, videos and "
                                          "scores are that run's." if info.get("used") else
                                          f"was to be copied from `{info['source']}` but was trained here: {info.get('why_not')}.")]
    lines += ["", "## Totals and the motion dimensions with 95% bootstrap intervals", "",
              f"Percentile intervals from {spec.bootstrap} paired bootstrap resamples of prompts (each dimension over its own "
              "prompt list, the same draws for every model). Composites and dimensions x100.", "",
              "| model | steps | NFE | Total | 95% CI | Quality | 95% CI | Semantic | 95% CI | dynamic degree | 95% CI | motion smoothness | 95% CI |",
              "|:---|---:|---:|---:|:---|---:|:---|---:|:---|---:|:---|---:|:---|"]
    for name, r in recs.items():
        lines.append(f"| {name} | {int(r['steps'])} | {_num(r.get('nfe'), '.0f')} | {_num(r['total_score'])} | {ci(name, 'total_score')} | "
                     f"{_num(r['quality_score'])} | {ci(name, 'quality_score')} | {_num(r['semantic_score'])} | {ci(name, 'semantic_score')} | "
                     f"{_num(r.get('dynamic_degree', math.nan))} | {ci(name, 'dynamic_degree')} | "
                     f"{_num(r.get('motion_smoothness', math.nan))} | {ci(name, 'motion_smoothness')} |")
    if stats["contrasts"]:
        lines += ["", "## Differences", "",
                  "a minus b on the same resamples (points x100), with the 95% interval of the difference. An interval that "
                  "contains 0 does not separate the two.", "",
                  "| contrast | a | b | ΔTotal | 95% CI | ΔQuality | 95% CI | ΔSemantic | 95% CI | Δdynamic degree | 95% CI | Δmotion smoothness | 95% CI |",
                  "|:---|:---|:---|---:|:---|---:|:---|---:|:---|---:|:---|---:|:---|"]
        for c in stats["contrasts"]:
            a, b = recs[c["a"]], recs[c["b"]]

            def d(k):
                return float(a.get(k, math.nan)) - float(b.get(k, math.nan))

            lines.append(f"| {c['label']} | {c['a']} | {c['b']} | " + " | ".join(
                f"{_num(d(k), '+.2f')} | {_fmt_ci(c.get(k))}" for k in stats["metrics"]) + " |")
    lines += ["", "## Reading", "", *_reading(stats, recs), "", *statistics]
    dims = ["model", "steps", "total_score", "quality_score", "semantic_score"] + [c for c in table.columns if c in VBENCH_DIMENSIONS]
    lines += ["## All 16 dimensions (x100)", "", markdown_table(table[dims]), "", "## Speed", "",
              "| model | steps | NFE | sampling s / video | speedup vs teacher (of NFE limit) |", "|:---|---:|---:|---:|---:|"]
    for name, r in recs.items():
        lines.append(f"| {name} | {int(r['steps'])} | {_num(r.get('nfe'), '.0f')} | {_num(r.get('sampling_seconds_per_video'), '.4f')} | "
                     f"{_num(r.get('speedup_vs_teacher'), '.1f')}x of {_num(r.get('nfe_limit'), '.0f')}x |")
    lines += ["", "Per video of a batch of the generation manifests, on the machine that ran the ablation (one thread per job, "
              "shared with other work: seconds are comparable only within one run).", "", "## Plots", "",
              *(f"![{k}]({paths[k].name})" for k in ("motion", "pairs", "dimensions", "composites")), ""]
    return "\n".join(lines)


def _reading(stats, recs) -> list[str]:
    """One line per contrast: which intervals exclude zero (whatever the sign)."""
    out = []
    names = {"total_score": "Total", "quality_score": "Quality", "semantic_score": "Semantic",
             "dynamic_degree": "dynamic degree", "motion_smoothness": "motion smoothness"}
    for c in stats["contrasts"]:
        a, b = recs[c["a"]], recs[c["b"]]
        parts = []
        for k in stats["metrics"]:
            iv = c.get(k)
            diff = float(a.get(k, math.nan)) - float(b.get(k, math.nan))
            if iv is None:
                continue
            sep = "excludes 0" if iv[0] > 0 or iv[1] < 0 else "contains 0"
            parts.append(f"{names[k]} {diff:+.2f} ({sep})")
        out.append(f"* **{c['label']}** ({c['a']} − {c['b']}): " + "; ".join(parts) + ".")
    return out


def _motion_plot(table, labels) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.report import _png_bytes

    keys = ("total_score", "dynamic_degree", "motion_smoothness")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, k in zip(axes, keys):
        y = table[k].to_numpy(dtype=float)
        lo, hi = table[f"{k}_ci_low"].to_numpy(dtype=float), table[f"{k}_ci_high"].to_numpy(dtype=float)
        x = np.arange(len(table))
        colors = ["#888888" if str(r).startswith(TEACHER) else ("#4c72b0" if int(s) <= 4 else "#dd8452")
                  for r, s in zip(table["row"], table["steps"])]
        ax.bar(x, y, color=colors)
        ax.errorbar(x, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], fmt="none", ecolor="black", capsize=4)
        ax.set_xticks(x)
        ax.set_xticklabels(table["model"], rotation=35, ha="right", fontsize=8)
        ax.set_title(k.replace("_", " ") + " (x100, 95% CI)", fontsize=10)
        finite = np.concatenate([lo[np.isfinite(lo)], hi[np.isfinite(hi)]])
        if finite.size:
            span = finite.max() - finite.min()
            ax.set_ylim(max(0, finite.min() - 0.3 * span - 1), min(100, finite.max() + 0.3 * span + 1))
    fig.suptitle("blue: 4 steps or fewer; orange: more; grey: the teacher", fontsize=9)
    fig.tight_layout()
    return _png_bytes(fig)
