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

import dataclasses
import json
import math
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import typer
import yaml

from bench.errors import RUN_FAILED, BenchError
from bench.config import CONFIG_DIR, VARIANTS, VIDEO_RMS, ConfigError
from bench.generate import DEFAULT_STUDENT_GUIDANCE
from bench.validate import json_safe

TEACHER = "teacher"
# Under work_dir: the training steps the variants share while they train (`bench.step_cache`).
SHARED_STEPS_DIR = "shared-steps"


@dataclass
class AblationSpec:
    """An ablation: which variants, how to generate and score, where to write."""

    name: str = "tiny-ablation"
    train_config: str = "tiny"
    train_overrides: list[str] = field(default_factory=list)
    variants: list[dict] = field(default_factory=lambda: [
        {"variant": "vcm"},
        {"variant": "vcm+img"},
        {"variant": "vcm+vid", "rm_vid": "viclip"},
        {"variant": "vcm+img+vid", "rm_vid": "viclip"},
        {"variant": "vcm+img+vid", "rm_vid": "internvid2"},
    ])
    student_steps: int = 4
    guidance_scale: float = DEFAULT_STUDENT_GUIDANCE
    teacher_steps: int = 50
    teacher_cfg: float | None = None  # None: the teacher's usual scale (its own one under native)
    # matched: 50-step DDIM + CFG on the students' grid; native: the teacher's own sampler
    # (bench generate --teacher-protocol; the real teachers only)
    teacher_protocol: str = "matched"
    suite: str = "tiny"
    dimensions: list[str] | None = None  # a subset of the suite (None: all 16 dimensions)
    limit: int | None = None  # only the first N prompts (after `dimensions`): smoke runs
    benchmark: str = "tiny"
    videos_per_prompt: int = 5
    seed: int = 2024
    generate_batch: int = 32
    jobs: int = 2
    threads_per_job: int = 1
    bootstrap: int = 2000
    # Training seeds: each variant is trained once per seed (run dirs `<model>-seed<k>`) and
    # the statistics resample seeds, then prompts. None: one run per variant, with the
    # training config's own seed (run dirs `<model>`).
    train_seeds: list[int] | None = None
    work_dir: str = "runs/ablate-tiny"
    report: str = "reports/tiny-ablation"

    def validate(self) -> None:
        errors = []
        if not isinstance(self.variants, list) or not all(isinstance(v, dict) for v in self.variants):
            raise ConfigError(f"invalid ablation config: variants must be a list of mappings, got {self.variants!r}")
        for v in self.variants:
            if v.get("variant") not in VARIANTS:
                errors.append(f"variant {v.get('variant')!r} (one of {', '.join(VARIANTS)})")
            if "vid" in str(v.get("variant", "")).split("+") and v.get("rm_vid", "viclip") not in VIDEO_RMS:
                errors.append(f"rm_vid {v.get('rm_vid')!r} (one of {', '.join(VIDEO_RMS)})")
        if not any(v.get("variant") == "vcm" for v in self.variants):
            errors.append("the variants must include vcm (differences are reported against it)")
        from bench.validate import number_problem

        numbers = {name: (1, None, True) for name in ("student_steps", "teacher_steps", "videos_per_prompt", "jobs",
                                                       "threads_per_job", "bootstrap", "generate_batch")}
        numbers.update(seed=(0, 2**63 - 1, True), guidance_scale=(0, None, False), teacher_cfg=(0, None, False))
        for name, (lo, hi, integer) in numbers.items():
            value = getattr(self, name)
            if value is None and name == "teacher_cfg":
                continue
            problem = number_problem(value, lo, hi, integer=integer)
            if problem:
                errors.append(f"{name}={value!r} {problem}")
        if self.limit is not None and (not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1):
            errors.append(f"limit={self.limit!r} must be a whole number >= 1 (or absent: every prompt)")
        if not isinstance(self.train_overrides, list) or not all(isinstance(o, str) for o in self.train_overrides):
            errors.append("train_overrides must be a list of key=value strings")
        elif not errors:
            # Every variant's training config, checked now rather than in a worker minutes later.
            from bench.config import load_config

            for v in self.variants:
                extra = [f"variant={v.get('variant')}"] + ([f"rm_vid={v['rm_vid']}"] if "rm_vid" in v else [])
                try:
                    load_config(self.train_config, list(self.train_overrides) + extra)
                except ConfigError as err:
                    errors.append(f"train_config/train_overrides for {v.get('variant')}: {err}")
                    break
        if self.suite not in ("tiny", "vbench"):
            errors.append(f"suite={self.suite!r} (tiny or vbench)")
        if self.teacher_protocol not in ("matched", "native"):
            errors.append(f"teacher_protocol={self.teacher_protocol!r} (matched or native)")
        elif self.teacher_protocol == "native" and self.train_config == "tiny":
            errors.append("teacher_protocol=native: the tiny teacher has no sampler of its own (use matched)")
        from bench.scoring.registry import BENCHMARKS, names_text

        if self.benchmark not in BENCHMARKS:
            errors.append(f"benchmark={self.benchmark!r} ({names_text()})")
        if self.train_seeds is not None:
            if not self.train_seeds or len(set(self.train_seeds)) != len(self.train_seeds) \
                    or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in self.train_seeds):
                errors.append(f"train_seeds={self.train_seeds!r} must be a non-empty list of distinct integers >= 0")
        names = [model_name(v) for v in self.variants]
        if len(set(names)) != len(names):
            errors.append("two variants have the same variant and rm_vid")
        if errors:
            raise ConfigError("invalid ablation config: " + "; ".join(errors))


def load_spec(path: str | Path | None = None, overrides: dict | None = None) -> AblationSpec:
    path = Path(path) if path else CONFIG_DIR / "ablate_tiny.yaml"
    if not path.is_file():
        raise ConfigError(f"ablation config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    known = {f.name for f in dataclasses.fields(AblationSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    spec = AblationSpec(**{**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}})
    spec.validate()
    return spec


def model_name(variant: dict) -> str:
    v = variant["variant"]
    return f"{v}-{variant.get('rm_vid', 'viclip')}" if "vid" in v.split("+") else v


# --- one model's job (runs in a worker process) ---------------------------------------------


def _labels(spec: AblationSpec, teacher: bool) -> tuple[str, str]:
    from bench.generate import default_label

    steps = spec.teacher_steps if teacher else spec.student_steps
    label = default_label(spec.suite, "teacher" if teacher else "student", steps, spec.teacher_protocol)
    return label, f"{label}-{spec.benchmark}"


def _suite_items(spec: AblationSpec):
    from bench.generate import limit_items, load_suite

    items, source = load_suite(spec.suite, spec.dimensions)
    if spec.limit is not None:
        items, source = limit_items(items, spec.limit), {**source, "limit": spec.limit}
    return items, source


def _score(spec: AblationSpec, videos: Path, scores: Path, report, zoo: str | None = None) -> dict:
    if spec.benchmark == "tiny":
        from bench.tinyworld.score import score_tiny

        return score_tiny(videos, scores, dimensions=spec.dimensions, zoo=zoo,
                          progress=lambda done, total: report("score", done, total))
    from bench.vbench.score import resolve_dimensions, score

    return score(videos, videos.name, scores, resolve_dimensions(spec.dimensions), None, force=False, command_line="bench ablate")


def generation_device(cfg) -> str:
    """A real teacher generates on the GPU when there is one (its 50-step baseline on the CPU
    would take days); the tiny world on the CPU, where its reference results were made."""
    import torch

    return "cuda" if cfg.teacher != "tiny" and torch.cuda.is_available() else "cpu"


def run_job(spec_dict: dict, entry: dict, queue: Any = None) -> dict:
    """Train (students), generate and score one model. Skips whatever is complete."""
    import torch

    spec = AblationSpec(**spec_dict)
    torch.set_num_threads(spec.threads_per_job)
    name = entry["name"]
    run_dir = Path(spec.work_dir) / name
    teacher = name == TEACHER
    timings: dict[str, float] = {}

    def report(stage: str, done: int, total: int) -> None:
        if queue is not None:
            queue.put((name, stage, done, total))

    from bench.config import config_to_dict, load_config
    from bench.generate import default_origin_steps, generate_videos
    from bench.runs import load_run_student, load_teacher, read_run, run_record, write_json_atomic

    t0 = time.time()
    if teacher:
        cfg = load_config(spec.train_config, list(spec.train_overrides))
        if not (run_dir / "run.json").is_file():
            write_json_atomic(run_dir / "run.json", run_record("teacher", config_to_dict(cfg), {"generation_seed": spec.seed},
                                                               {"status": "finished"}))
        bundle = load_teacher(cfg, device=generation_device(cfg))
        unet = bundle.unet
    else:
        overrides = list(spec.train_overrides) + [f"variant={entry['variant']}"]
        if "rm_vid" in entry:
            overrides.append(f"rm_vid={entry['rm_vid']}")
        if entry.get("train_seed") is not None:
            overrides.append(f"seed={entry['train_seed']}")
        cfg = load_config(spec.train_config, overrides)
        status = read_run(run_dir).get("status") if (run_dir / "run.json").is_file() else None
        if status != "finished":
            from bench.train import TENSORBOARD_DIR, train

            # One TensorBoard log directory for the whole ablation (WORK_DIR/tensorboard/<model>/):
            # `tensorboard --logdir WORK_DIR/tensorboard` overlays every variant's curves.
            # The variants' jobs share each step's batch and teacher pass (`bench.step_cache`):
            # the first to reach a step computes it, the others read it; bit for bit the same.
            train(cfg, run_dir, resume=status is not None, device="cpu" if not torch.cuda.is_available() else None,
                  on_step=lambda step, logs: report("train", step, cfg.steps),
                  tracker_dir=Path(spec.work_dir) / TENSORBOARD_DIR, shared_steps=Path(spec.work_dir) / SHARED_STEPS_DIR)
        timings["train_seconds"] = float(read_run(run_dir).get("train_seconds", time.time() - t0))
        bundle, unet, _ = load_run_student(run_dir, device=generation_device(cfg))
    label, score_label = _labels(spec, teacher)
    videos = run_dir / "videos" / label
    items, source = _suite_items(spec)
    t1 = time.time()
    summary = generate_videos(
        bundle, unet, items, videos,
        sampler="teacher" if teacher else "student",
        steps=spec.teacher_steps if teacher else spec.student_steps,
        guidance_scale=spec.teacher_cfg if teacher else spec.guidance_scale,
        videos_per_prompt=spec.videos_per_prompt, seed=spec.seed, batch_size=spec.generate_batch,
        progress=lambda done, total: report("generate", done, total), model_label=str(run_dir), suite_source=source,
        record={"suite": spec.suite, "ablation": spec.name},
        teacher_protocol=spec.teacher_protocol if teacher else "matched",
        origin_steps=None if teacher else default_origin_steps(cfg.skip),
    )
    timings["generate_seconds"] = round(time.time() - t1, 1)
    t2 = time.time()
    _score(spec, videos, run_dir / "scores" / score_label, report, zoo=cfg.weights.get("tiny_zoo"))
    timings["score_seconds"] = round(time.time() - t2, 1)
    # Seconds spent on each stage over every pass: a resumed ablation adds the time of the
    # work it redid instead of replacing the first pass's figures with its own (near zero).
    job_path = run_dir / "ablation_job.json"
    spent = json.loads(job_path.read_text()).get("timings", {}) if job_path.is_file() else {}
    for key in ("generate_seconds", "score_seconds"):
        timings[key] = round(timings[key] + float(spent.get(key, 0.0)), 1)
    write_json_atomic(job_path, {"timings": timings})
    return {"name": name, "run_dir": str(run_dir), "videos": str(videos), "scores": str(run_dir / "scores" / score_label),
            "timings": timings, "generated": dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else str(summary)}


# --- statistics ----------------------------------------------------------------------------


def prompt_of(video_path: str) -> str:
    """`{prompt}-{index}.mp4` -> prompt (VBench's naming; prompts may contain '-')."""
    from bench.report.statistics import video_name_parts

    return video_name_parts(video_path)[0]


def bootstrap_composites(models: Sequence[Any], n: int, seed: int, reference: str,
                         seeds: Mapping[str, Sequence[Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Paired, stratified bootstrap over prompts (`bench.report.statistics.bootstrap`).

    Dimensions are resampled over their own prompt lists (dimensions that share a list share
    the draw), with the same draws for every model, so that differences between models are
    paired as the videos are (same prompts, same seeds). `seeds` (name -> one result per
    training seed) makes it two-level. Returns, per model, the percentile 95% intervals of
    Total / Quality / Semantic and of their differences to `reference`.
    """
    from bench.report.statistics import COMPOSITES, bootstrap, build_design, percentile_interval

    design = build_design(seeds or {m.name: [m] for m in models})
    samples = bootstrap(design, n, seed)
    out: dict[str, dict[str, Any]] = {}
    for name in design.names:
        res: dict[str, Any] = {}
        for k in COMPOSITES:
            arr = samples[name].get(k)
            res[k] = None if arr is None else percentile_interval(arr)
            if reference in samples and name != reference:
                ref = samples[reference].get(k)
                res[f"delta_{k}"] = None if arr is None or ref is None else percentile_interval(np.asarray(arr) - np.asarray(ref))
        out[name] = res
    return out


def speed_rows(entries: Sequence[dict]) -> list[dict]:
    """NFE and seconds per video from each model's generation manifest."""
    from bench.generate import read_manifest

    rows = []
    for e in entries:
        records = list(read_manifest(e["videos"]).values())
        secs = [float(r["seconds"]) for r in records if r.get("seconds") is not None]
        sampling = [float(r["sampling_seconds"]) for r in records if r.get("sampling_seconds") is not None]
        rows.append({"model": e["name"], "steps": records[0]["steps"] if records else None,
                     "nfe": records[0]["nfe"] if records else None,
                     "sampling_seconds_per_video": float(np.mean(sampling)) if sampling else math.nan,
                     "seconds_per_video": float(np.mean(secs)) if secs else math.nan})
    teacher = next((r for r in rows if r["model"] == TEACHER), None)
    for r in rows:
        for key, out in (("sampling_seconds_per_video", "speedup_vs_teacher"), ("seconds_per_video", "end_to_end_speedup_vs_teacher")):
            r[out] = teacher[key] / r[key] if teacher and r[key] > 0 else math.nan
        # The NFE limit: the speedup if a network evaluation cost the same in both models and
        # nothing else took time (teacher NFE / model NFE; CFG counts 2 NFE per step).
        r["nfe_limit"] = teacher["nfe"] / r["nfe"] if teacher and teacher["nfe"] and r["nfe"] else math.nan
        for out in ("speedup_vs_teacher", "end_to_end_speedup_vs_teacher"):
            r[out.replace("speedup_vs_teacher", "fraction_of_nfe_limit")] = r[out] / r["nfe_limit"] if r["nfe_limit"] > 0 else math.nan
    return rows


# --- the report --------------------------------------------------------------------------------


def _fmt_ci(ci) -> str:
    return "—" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _num(value, fmt: str = ".2f") -> str:
    """A number for the markdown tables; "—" where there is none (an incomplete composite)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if not math.isfinite(v) else format(v, fmt)


def merge_seeds(runs: Sequence[Any]) -> Any:
    """One model's row from its training seeds' results: each dimension the mean over seeds."""
    if len(runs) == 1:
        return runs[0]
    common = [d for d in runs[0].dimensions if all(d in r.dimensions for r in runs)]
    return dataclasses.replace(runs[0], dimensions={d: float(np.mean([r.dimensions[d] for r in runs])) for d in common},
                               per_video={d: runs[0].per_video[d] for d in common})


def _run_config(entry: dict) -> dict | None:
    """The training config of a student's run (None for the teacher: it trained on nothing)."""
    if entry.get("variant") == TEACHER:
        return None
    path = Path(entry["run_dir"]) / "run.json"
    try:
        return json.loads(path.read_text()).get("config")
    except (OSError, ValueError):
        return None


def write_ablation_report(spec: AblationSpec, entries: Sequence[dict]) -> list[Path]:
    from bench.report import build_report, load_results_folder, markdown_table, _write_atomic

    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(e.get("model", e["name"]), []).append(e)
    per_seed = {name: [load_results_folder(Path(e["scores"]), name=name) for e in es] for name, es in groups.items()}
    models = [merge_seeds(runs) for runs in per_seed.values()]
    by_name = {name: es[0] for name, es in groups.items()}
    variant_col = [by_name[m.name].get("variant", TEACHER) for m in models]
    rm_col = [by_name[m.name].get("rm_vid", "") if "vid" in by_name[m.name].get("variant", "").split("+") else "" for m in models]
    speed = {r["model"]: r for r in speed_rows([{**es[0], "name": name} for name, es in groups.items()])}
    steps_col = [speed[m.name]["steps"] for m in models]
    cis = bootstrap_composites(models, spec.bootstrap, spec.seed, reference="vcm", seeds=per_seed)
    from bench.report.compare import analyse

    configs = {name: _run_config(es[0]) for name, es in groups.items()}
    analysis = analyse(per_seed, spec.bootstrap, spec.seed, configs, reference="vcm")
    extra = {"variant": variant_col, "rm_vid": rm_col, "steps": steps_col}
    report = build_report(models, extra)
    table = report.table.copy()
    for k in ("total_score", "quality_score", "semantic_score"):
        table[f"{k}_ci_low"] = [cis[m.name][k][0] if cis[m.name][k] else math.nan for m in models]
        table[f"{k}_ci_high"] = [cis[m.name][k][1] if cis[m.name][k] else math.nan for m in models]
        table[f"delta_{k}_vs_vcm"] = [
            float(table.loc[i, k] - table.loc[variant_col.index("vcm"), k]) if m.name != "vcm" else 0.0
            for i, m in enumerate(models)
        ]
        table[f"delta_{k}_vs_vcm_ci_low"] = [cis[m.name].get(f"delta_{k}", (0.0, 0.0))[0] if cis[m.name].get(f"delta_{k}", (0, 0)) else math.nan for m in models]
        table[f"delta_{k}_vs_vcm_ci_high"] = [cis[m.name].get(f"delta_{k}", (0.0, 0.0))[1] if cis[m.name].get(f"delta_{k}", (0, 0)) else math.nan for m in models]
    for key in ("nfe", "sampling_seconds_per_video", "seconds_per_video", "speedup_vs_teacher", "end_to_end_speedup_vs_teacher",
                "nfe_limit"):
        table[key] = [speed[m.name][key] for m in models]

    prefix = Path(spec.report)
    paths = {
        "csv": prefix.with_name(prefix.name + ".csv"),
        "md": prefix.with_name(prefix.name + ".md"),
        "json": prefix.with_name(prefix.name + ".json"),
        "dimensions": prefix.with_name(prefix.name + "_dimensions.png"),
        "composites": prefix.with_name(prefix.name + "_composites.png"),
        "ci": prefix.with_name(prefix.name + "_ci.png"),
        "speed": prefix.with_name(prefix.name + "_speed.png"),
        "pairs": prefix.with_name(prefix.name + "_pairs.png"),
        "pairs_csv": prefix.with_name(prefix.name + "_pairs.csv"),
    }
    from bench.report.compare import analysis_json, markdown_sections, pair_rows, pairs_plot

    markdown = _ablation_markdown(spec, table, cis, speed, models, entries, paths, markdown_sections(analysis))
    contents = {
        paths["csv"]: table.to_csv(index=False).encode(),
        paths["md"]: markdown.encode(),
        # NaN (no value: a speed-up without a teacher, an interval without samples) is null.
        paths["json"]: json.dumps(json_safe({"spec": dataclasses.asdict(spec), "models": list(entries), "bootstrap": cis,
                                             "speed": list(speed.values()), "statistics": analysis_json(analysis)}),
                                  indent=2, default=str, allow_nan=False).encode(),
        paths["pairs_csv"]: __import__("pandas").DataFrame(pair_rows(analysis)).to_csv(index=False).encode(),
        paths["pairs"]: pairs_plot(analysis),
        paths["dimensions"]: report.plots["_dimensions.png"],
        paths["composites"]: report.plots["_composites.png"],
        paths["ci"]: _ci_plot(table),
        paths["speed"]: _speed_plot(table),
    }
    # The report travels without runs/ (git-ignored, large): keep what it was made from next
    # to it, i.e. the ablation spec and each model's run record and training log.
    runs_dir = prefix.with_name(prefix.name + "_runs")
    contents[runs_dir / "ablation_spec.json"] = json.dumps(dataclasses.asdict(spec), indent=2, allow_nan=False).encode()
    for e in entries:
        for fname in ("run.json", "train_log.csv"):
            src = Path(e["run_dir"]) / fname
            if src.is_file():
                contents[runs_dir / e["name"] / fname] = src.read_bytes()
    for path, data in contents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
    return list(contents)


def _verdict(table, cis) -> list[str]:
    lines = []
    rows = {r["model"]: r for r in table.to_dict("records")}
    for name, r in rows.items():
        if r["variant"] != "vcm+img+vid":
            continue
        ci = cis[name].get("delta_total_score")
        if ci is None:
            continue
        excl = ci[0] > 0
        lines.append(
            f"* **{name}** vs VCM: Total {r['delta_total_score_vs_vcm']:+.2f} points, 95% CI {_fmt_ci(ci)}: "
            + ("the interval excludes zero." if excl else "the interval does **not** exclude zero.")
        )
        if TEACHER in rows:
            t = rows[TEACHER]
            gap = r["total_score"] - t["total_score"]
            lines.append(
                f"* **{name}** ({int(r['steps'])} steps) vs the {int(t['steps'])}-step teacher: Total {r['total_score']:.2f} vs "
                f"{t['total_score']:.2f} ({gap:+.2f}); "
                + ("the student beats the teacher." if gap > 0 else "the student does not reach the teacher.")
            )
    return lines


def speed_markdown(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report's speed table: sampling-only and end-to-end speedups, each beside its NFE limit."""

    def speedup(r, key):
        limit = r.get("nfe_limit", math.nan)
        return f"{_num(r[key], '.1f')}x" + (f" of {_num(limit, '.0f')}x" if _num(limit) != "—" else "")

    lines = ["## Speed", "",
             "| model | steps | NFE | sampling s / video | speedup vs teacher (of NFE limit) | end-to-end s / video | end-to-end speedup (of NFE limit) |",
             "|:---|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['model']} | {int(r['steps'])} | {int(r['nfe'])} | {_num(r['sampling_seconds_per_video'], '.4f')} | "
                     f"{speedup(r, 'speedup_vs_teacher')} | {_num(r['seconds_per_video'], '.4f')} | {speedup(r, 'end_to_end_speedup_vs_teacher')} |")
    return lines


def _ablation_markdown(spec, table, cis, speed, models, entries, paths, statistics: Sequence[str] = ()) -> str:
    from bench.report import markdown_table

    comp = table[["model", "variant", "rm_vid", "steps", "total_score", "quality_score", "semantic_score"]].copy()
    lines = [
        f"# {spec.name}: T2V-Turbo ablation (paper Tables 2 and 3)",
        "",
        f"Teacher config `{spec.train_config}`" + (f" with overrides `{' '.join(spec.train_overrides)}`" if spec.train_overrides else "")
        + f"; suite `{spec.suite}`, benchmark `{spec.benchmark}`, {spec.videos_per_prompt} videos per prompt, generation seed {spec.seed} "
        f"(the same per-video seeds for every model). Students sample with {spec.student_steps} steps (embedded w = {spec.guidance_scale}); "
        + (f"the teacher with {spec.teacher_steps}-step DDIM + CFG (teacher protocol: matched, this project's baseline on the students' grid). "
           if spec.teacher_protocol == "matched" else
           f"the teacher with its own {spec.teacher_steps}-step sampler (teacher protocol: native, the protocol of the teachers' published scores). ")
        + f"Run directories: `{spec.work_dir}/<model>/`.",
        "",
        "## Total / Quality / Semantic with 95% bootstrap intervals",
        "",
        f"Percentile intervals from {spec.bootstrap} paired bootstrap resamples of prompts (each dimension over its own prompt list, "
        "the same draws for every model); Δ is the difference to VCM on the same draws.",
        "",
        "| model | variant | rm_vid | steps | Total | 95% CI | Quality | 95% CI | Semantic | 95% CI | ΔTotal vs VCM | 95% CI |",
        "|:---|:---|:---|---:|---:|:---|---:|:---|---:|:---|---:|:---|",
    ]
    for r in table.to_dict("records"):
        c = cis[r["model"]]
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['rm_vid'] or ''} | {int(r['steps'])} | {_num(r['total_score'])} | {_fmt_ci(c['total_score'])} | "
            f"{_num(r['quality_score'])} | {_fmt_ci(c['quality_score'])} | {_num(r['semantic_score'])} | {_fmt_ci(c['semantic_score'])} | "
            + ("—" if r["model"] == "vcm" else _num(r["delta_total_score_vs_vcm"], "+.2f")) + " | "
            + ("—" if r["model"] == "vcm" else _fmt_ci(c.get("delta_total_score"))) + " |"
        )
    if spec.train_seeds:
        lines += ["", f"Each student is trained with seeds {', '.join(map(str, spec.train_seeds))}: its row is the mean over "
                  "seeds, and the intervals resample seeds, then prompts (two-level)."]
    lines += ["", "## Reading", "", *_verdict(table, cis), "", *statistics]
    dims_cols = ["model", "variant", "rm_vid", "steps", "total_score", "quality_score", "semantic_score"] + [
        c for c in table.columns if c in __import__("bench.report", fromlist=["VBENCH_DIMENSIONS"]).VBENCH_DIMENSIONS
    ]
    lines += ["## All 16 dimensions (x100)", "", markdown_table(table[dims_cols]), ""]
    lines += speed_markdown(table.to_dict("records"))
    lines += [
        "",
        "Per video of a batch, on the machine that ran the ablation (one thread per job), from each model's "
        "`videos/*/manifest*.jsonl`: sampling is the denoising loop alone (what NFE counts); end to end adds text "
        "encoding and VAE decoding. The NFE limit beside each speedup is the teacher's NFE over the model's (CFG: "
        "2 NFE per step), the speedup if a network evaluation cost the same in both and nothing else took time.",
        "",
        "## Plots",
        "",
        *(f"![{k}]({paths[k].name})" for k in ("ci", "pairs", "dimensions", "composites", "speed")),
        "",
    ]
    return "\n".join(lines)


def _ci_plot(table) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.report import _png_bytes

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, k in zip(axes, ("total_score", "quality_score", "semantic_score")):
        y = table[k].to_numpy()
        lo, hi = table[f"{k}_ci_low"].to_numpy(), table[f"{k}_ci_high"].to_numpy()
        x = np.arange(len(table))
        colors = ["#888888" if v == TEACHER else ("#4c72b0" if v == "vcm" else "#dd8452") for v in table["variant"]]
        ax.bar(x, y, color=colors)
        ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", ecolor="black", capsize=4)
        ax.set_xticks(x)
        ax.set_xticklabels(table["model"], rotation=35, ha="right", fontsize=8)
        ax.set_title(k.replace("_", " ") + " (x100, 95% CI)")
        finite = np.concatenate([lo[np.isfinite(lo)], hi[np.isfinite(hi)]])
        if finite.size:
            span = finite.max() - finite.min()
            ax.set_ylim(max(0, finite.min() - 0.3 * span - 1), min(100, finite.max() + 0.3 * span + 1))
        for xi, yi in zip(x, y):
            ax.text(xi, yi, f"{yi:.1f}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    return _png_bytes(fig)


def _speed_plot(table) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.report import _png_bytes

    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(len(table))
    ax.bar(x, table["sampling_seconds_per_video"], color=["#888888" if v == TEACHER else "#4c72b0" for v in table["variant"]])
    for xi, (s, n) in enumerate(zip(table["sampling_seconds_per_video"], table["nfe"])):
        ax.text(xi, s, f"NFE {int(n)}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(table["model"], rotation=35, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("sampling seconds per video (log)")
    ax.set_title("Generation cost per video")
    fig.tight_layout()
    return _png_bytes(fig)


# --- orchestration -------------------------------------------------------------------------------


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
# the tiny world side by side (benchmarks/results/speed_memory.json, a loaded 2-core machine):
# one training sample-step of VCM at batch 8 (~1.2 s per step), the share each reward model adds
# to it (T2V-Turbo with both: ~1.25x VCM), and one network evaluation of one video at 32 videos
# per call (the teacher's 50-step CFG: 100 NFE per video). Only the order depends on them.
# The shared steps (`bench.step_cache`) make every training after the first cheaper by the same
# seconds per step (its batch and teacher pass are read), so they leave this order unchanged:
# the longest training starts first, beside the teacher's generation, and computes them.
TRAIN_SECONDS_PER_SAMPLE = 0.15
REWARD_SHARE_OF_STEP = 0.12
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


def run_ablation(spec: AblationSpec, console: Any = None) -> list[Path]:
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    entries = plan_entries(spec)
    Path(spec.work_dir).mkdir(parents=True, exist_ok=True)
    state_path = Path(spec.work_dir) / "ablation.json"
    spec_dict = dataclasses.asdict(spec)
    if state_path.is_file():
        previous = json.loads(state_path.read_text()).get("spec", {})
        keep = ("jobs", "threads_per_job", "bootstrap", "report")
        # A key added since the ablation was started counts as its default, which it ran with.
        defaults = dataclasses.asdict(AblationSpec())
        changed = sorted(k for k in spec_dict if k not in keep and previous.get(k, defaults[k]) != spec_dict[k])
        if changed:
            raise ConfigError(f"{state_path}: this ablation was started with different settings ({', '.join(changed)}); "
                              "use another work_dir or the same config")
    from bench.runs import run_record, write_json_atomic

    write_json_atomic(state_path, run_record("ablation", spec_dict, {"generation_seed": spec.seed}, {"spec": spec_dict}))
    ctx = mp.get_context("spawn")
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
                                   "wall_seconds": round(time.time() - t0, 1)})
    return write_ablation_report(spec, entries_done)


class AblationError(BenchError, RuntimeError):
    """A job of the ablation failed; `code` is the exit status (that of the job's own error)."""

    code = RUN_FAILED


def register(app: typer.Typer) -> None:
    @app.command("ablate")
    def ablate_command(
        config: Path = typer.Option(None, "--config", "-c", help="Ablation YAML (default: bench/configs/ablate_tiny.yaml)."),
        work_dir: str = typer.Option(None, "--work-dir", help="Where the runs go (default: the config's work_dir)."),
        report: str = typer.Option(None, "--report", help="Report prefix (default: the config's, reports/tiny-ablation)."),
        jobs: int = typer.Option(None, "--jobs", "-j", help="Models trained/generated/scored in parallel (default: the config's)."),
    ) -> None:
        """Train VCM, VCM+R_img, VCM+R_vid, T2V-Turbo (ViCLIP, InternVid2), generate each at 4 steps plus
        the 50-step CFG teacher, score, and write the ablation report (markdown, CSV, plots).

        Resumes where it stopped. Example: `bench ablate` (the tiny world: what `make demo` runs).
        `bench ablate --config bench/configs/ablate_tiny_v2.yaml`: the T2V-Turbo-v2 ablation (v1 vs v2
        with and without motion guidance, 4 and 16 steps; its teacher cache is built first).
        """
        from rich.console import Console

        # ConfigError (exit 2) and AblationError (its job's status) reach bench's one handler.
        console = Console(stderr=True)
        t0 = time.time()
        from bench.ablate import v2 as ablate_v2

        if config is not None and ablate_v2.spec_file_is_v2(config):
            # A `kind: v2` spec (bench/configs/ablate_tiny_v2.yaml): the T2V-Turbo-v2 ablation.
            paths = ablate_v2.run_v2_ablation(ablate_v2.load_v2_spec(config, {"work_dir": work_dir, "report": report, "jobs": jobs}),
                                              console=console)
        else:
            paths = run_ablation(load_spec(config, {"work_dir": work_dir, "report": report, "jobs": jobs}), console=console)
        console.print(f"[green]ablation done[/] in {time.time() - t0:.0f}s:")
        for p in paths:
            console.print(f"  {p}")
