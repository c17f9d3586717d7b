"""The ablation report: markdown, CSV, JSON, the all-pairs files and the plots."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bench.validate import json_safe
from bench.ablate.spec import AblationSpec, TEACHER
from bench.ablate.statistics import bootstrap_composites, speed_rows


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


def report_contents(spec: Any, paths: Mapping[str, Path], table: Any, markdown: str, models: Sequence[Any],
                    bootstrap: Any, speed: Mapping[str, Any], analysis: Any, report: Any) -> dict[Path, bytes]:
    """The files every ablation report writes (v1 and v2): the table as CSV, the markdown, the
    JSON (NaN, i.e. no value: a speed-up without a teacher, an interval without samples, is
    null), the all-pairs CSV and plot, the dimension and composite plots, and the spec beside
    them in `<report>_runs/ablation_spec.json`."""
    import pandas as pd

    from bench.report.compare import analysis_json, pair_rows, pairs_plot

    runs_dir = paths["csv"].with_name(paths["csv"].stem + "_runs")
    return {
        paths["csv"]: table.to_csv(index=False).encode(),
        paths["md"]: markdown.encode(),
        paths["json"]: json.dumps(json_safe({"spec": dataclasses.asdict(spec), "models": list(models), "bootstrap": bootstrap,
                                             "speed": list(speed.values()), "statistics": analysis_json(analysis)}),
                                  indent=2, default=str, allow_nan=False).encode(),
        paths["pairs_csv"]: pd.DataFrame(pair_rows(analysis)).to_csv(index=False).encode(),
        paths["pairs"]: pairs_plot(analysis),
        paths["dimensions"]: report.plots["_dimensions.png"],
        paths["composites"]: report.plots["_composites.png"],
        runs_dir / "ablation_spec.json": json.dumps(dataclasses.asdict(spec), indent=2, allow_nan=False).encode(),
    }


def run_records(runs_dir: Path, runs: Sequence[tuple[str, str | Path]],
                files: Sequence[str] = ("run.json", "train_log.csv")) -> dict[Path, bytes]:
    """Each run's record files that exist, at `runs_dir/<name>/<file>`: what a report was made
    from travels with it (runs/ is git-ignored and large)."""
    out: dict[Path, bytes] = {}
    for name, run_dir in runs:
        for fname in files:
            src = Path(run_dir) / fname
            if src.is_file():
                out[runs_dir / name / fname] = src.read_bytes()
    return out


def write_report_files(contents: Mapping[Path, bytes]) -> list[Path]:
    """Write every file of a report, each atomically; returns their paths."""
    from bench.report import _write_atomic

    for path, data in contents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
    return list(contents)


def write_ablation_report(spec: AblationSpec, entries: Sequence[dict]) -> list[Path]:
    from bench.report import build_report, load_results_folder

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
    from bench.report.compare import markdown_sections

    markdown = _ablation_markdown(spec, table, cis, speed, models, entries, paths, markdown_sections(analysis))
    contents = {
        **report_contents(spec, paths, table, markdown, entries, cis, speed, analysis, report),
        paths["ci"]: _ci_plot(table),
        paths["speed"]: _speed_plot(table),
    }
    # The report travels without runs/ (git-ignored, large): keep what it was made from next
    # to it, i.e. the ablation spec and each model's run record and training log.
    runs_dir = prefix.with_name(prefix.name + "_runs")
    contents.update(run_records(runs_dir, [(e["name"], e["run_dir"]) for e in entries]))
    return write_report_files(contents)


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
