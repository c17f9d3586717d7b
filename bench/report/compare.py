"""`bench compare`: every pairwise comparison of models scored on one benchmark.

The analysis (`analyse`) is shared with `bench ablate`, whose report carries the same
sections: the all-pairs matrix (paired difference, 95% bootstrap interval, permutation
p-value, Holm-adjusted across the pairs), the minimum detectable effect of the design, the
between-seed spread when models have several training seeds, and the reward / judge
leakage audit with its held-out Totals. The statistics are in `bench.report.statistics`, the
leakage map in `bench.report.leakage`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bench.report.statistics import COMPOSITES
from bench.validate import json_safe

HELD_OUT = {"weights": ("weights",), "family": ("weights", "family")}


@dataclass
class Analysis:
    design: Any
    samples: dict
    pairs: list[dict]
    mde: dict
    seeds: dict
    leakage: dict
    n: int
    seed: int
    reference: str | None = None


def analyse(per_seed: Mapping[str, Sequence[Any]], n: int, seed: int, configs: Mapping[str, Mapping | None] | None = None,
            reference: str | None = None) -> Analysis:
    """`per_seed`: model name -> its results, one per training seed; `configs`: model name ->
    the training config it came from (None for an untrained model), for the leakage audit."""
    from bench.report import leakage
    from bench.report import statistics as st

    design = st.build_design(per_seed)
    samples = st.bootstrap(design, n, seed)
    metrics = [*COMPOSITES, *design.dimensions]
    pairs = st.pairwise(design, samples, metrics, permutations=n, seed=seed)
    from bench.report import aggregation_table

    # The MDE is of the Total: it needs every dimension the Total is made of.
    complete = set(aggregation_table(design.benchmark).dimensions) <= set(design.dimensions)
    comp = st.pooled_components(design) if len(design.names) > 1 and complete else None
    mde = st.detectable_effects(comp) if comp is not None else {}
    if comp is not None:
        mde["design_mde"] = st.minimum_detectable_effect(comp)

    seeds: dict[str, Any] = {}
    if any(design.seeds(m) > 1 for m in design.names):
        for m in design.names:
            totals = []
            for s in range(design.seeds(m)):
                c = st.composites(design.seed_dimensions(m, s), design.benchmark)
                totals.append(100 * c["total_score"] if c else math.nan)
            prompt_only = st.bootstrap(st.build_design({m: [per_seed[m][0]]}), n, seed)[m].get("total_score")
            seeds[m] = {"totals": totals, "between_seed_sd": float(np.std(totals, ddof=1)) if len(totals) > 1 else math.nan,
                        "between_prompt_sd": float(100 * np.nanstd(prompt_only)) if prompt_only is not None else math.nan}

    cells = {m: leakage.leaking_cells(design.benchmark, (configs or {}).get(m)) for m in design.names}
    all_cells = [c for cs in cells.values() for c in cs]
    held_out = {}
    for label, kinds in HELD_OUT.items():
        excluded = leakage.excluded_dimensions(all_cells, kinds)
        if not excluded:
            continue
        s = st.bootstrap(design, n, seed, exclude=excluded)
        held_out[label] = {
            "excluded": excluded,
            "models": {m: {"total": 100 * design.point(m, excluded).get("total_score", math.nan),
                           "ci": st.percentile_interval(s[m]["total_score"]) if "total_score" in s[m] else None,
                           **({"delta": 100 * (design.point(m, excluded)["total_score"] - design.point(reference, excluded)["total_score"]),
                               "delta_ci": st.percentile_interval(np.asarray(s[m]["total_score"]) - np.asarray(s[reference]["total_score"]))}
                              if reference in design.names and m != reference and "total_score" in s[m] else {})}
                       for m in design.names},
        }
    return Analysis(design, samples, pairs, mde, seeds, {"cells": cells, "held_out": held_out}, n, seed, reference)


# --------------------------------------------------------------------------------------
# Rendering


def _ci(ci) -> str:
    return "—" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def pair_rows(analysis: Analysis) -> list[dict]:
    """The CSV rows: every pair and metric, differences in points (x100)."""
    return [{"a": r["a"], "b": r["b"], "metric": r["metric"], "difference": r["difference"],
             "ci_low": r["ci"][0] if r["ci"] else math.nan, "ci_high": r["ci"][1] if r["ci"] else math.nan,
             "p": r["p"], "p_holm": r["p_holm"]} for r in analysis.pairs]


def markdown_sections(analysis: Analysis) -> list[str]:
    names = analysis.design.names
    lines = ["## All pairs", "",
             f"Row minus column, points of Total (x100), on the same paired resamples as above: the difference, its 95% "
             f"bootstrap interval ({analysis.n} resamples) and the p-value of a paired permutation test over prompts "
             f"({analysis.n} permutations; a prompt's videos swap models as one unit), Holm-adjusted across the "
             f"{len(names) * (len(names) - 1) // 2} pairs (with {analysis.n} permutations no p falls below {2 / (analysis.n + 1):.4f} "
             "before adjustment). `*`: adjusted p < 0.05. Every metric and dimension is in the `_pairs.csv` file."
             + (" With several training seeds the intervals resample seeds too, while the permutation test holds the "
                "trained models fixed (its null is about prompts and videos)." if analysis.seeds else ""), ""]
    by = {(r["a"], r["b"], r["metric"]): r for r in analysis.pairs}
    for metric, title in (("total_score", "Total"), ("quality_score", "Quality"), ("semantic_score", "Semantic")):
        lines += [f"**{title}**", "", "| | " + " | ".join(names[1:]) + " |", "|:---|" + "---:|" * (len(names) - 1)]
        for i, a in enumerate(names[:-1]):
            cells = []
            for j, b in enumerate(names[1:], start=1):
                r = by.get((a, b, metric))
                if j <= i or r is None:
                    cells.append("")
                    continue
                star = "*" if math.isfinite(r["p_holm"]) and r["p_holm"] < 0.05 else ""
                cells.append(f"{r['difference']:+.2f}{star} {_ci(r['ci'])} p={_p(r['p_holm'])}")
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        lines.append("")

    if analysis.seeds:
        lines += ["## Training seeds", "",
                  "Total of each training seed's model, the spread between seeds (SD over seeds) beside the spread "
                  "between prompt resamples (bootstrap SD of one seed's Total), and, in the variance of a Total "
                  "difference, the share of each source (pooled over pairs).", "",
                  "| model | Total per seed | between-seed SD | between-prompt SD |", "|:---|:---|---:|---:|"]
        for m, s in analysis.seeds.items():
            sd = f"{s['between_seed_sd']:.2f}" if math.isfinite(s["between_seed_sd"]) else "—"
            lines.append(f"| {m} | {', '.join(f'{t:.2f}' for t in s['totals'])} | {sd} | {s['between_prompt_sd']:.2f} |")
        shares = analysis.mde.get("shares", {})
        if shares:
            top = max(shares, key=lambda k: shares[k] if math.isfinite(shares[k]) else -1)
            lines += ["", "Variance of a Total difference: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
                      + f"; {top} dominate{'s' if top != 'seeds' else ''}.", ""]
        else:
            lines.append("")

    if analysis.mde:
        mde = analysis.mde
        seeds_note = ("" if mde["seed_variance_known"] else
                      " One training seed per model: the between-seed variance is not estimated, so these figures are "
                      "lower bounds and the seeds columns are left out (set `train_seeds` to measure it).")
        lines += ["## Detectable effects", "",
                  f"The smallest true Total difference (points) a two-sided 5% test detects with 80% power, from the "
                  f"variance components of the observed pairwise differences (pooled over pairs): between prompts, "
                  f"between videos of a prompt, between training seeds.{seeds_note} This design: "
                  f"**{mde['design_mde']:.2f}** points.", "",
                  "| prompts | videos per prompt | seeds | MDE (points) |", "|---:|---:|---:|---:|"]
        for r in mde["grid"]:
            lines.append(f"| x{r['prompts_x']:g} | {r['videos']:.3g} | {r['seeds']} | {r['mde']:.2f} |")
        lines += ["", "What a target effect needs, each factor alone with the other two as run (videos tried up to 250 per "
                  "prompt, prompts up to x32, seeds up to 20; — : not reached, the other sources set a floor):", "",
                  "| target (points) | videos per prompt | prompts | seeds |", "|---:|---:|---:|---:|"]
        for r in mde["needs"]:
            seeds = r.get("seeds", "not estimated") if mde["seed_variance_known"] else "not estimated"
            lines.append(f"| {r['target']:g} | {r['videos'] if r['videos'] is not None else '—'} | "
                         f"{'x' + format(r['prompts_x'], 'g') if r['prompts_x'] is not None else '—'} | "
                         f"{seeds if seeds is not None else '—'} |")
        lines.append("")

    cells = analysis.leakage["cells"]
    lines += ["## Reward / judge leakage", "",
              "Dimensions whose evaluator is a reward model the variant trained on (`weights`: the same checkpoint) or "
              "shares its architecture family (`family`): there the score rewards the training signal itself.", ""]
    flagged = [(m, c) for m, cs in cells.items() for c in cs]
    if not flagged:
        lines += ["No model trained on a reward model that is also one of this benchmark's evaluators.", ""]
    else:
        lines += ["| model | dimension | kind | reward | evaluator |", "|:---|:---|:---|:---|:---|"]
        for m, c in flagged:
            lines.append(f"| {m} | {c['dimension']} | {c['kind']} | {c['reward']} | {c['evaluator']} |")
        lines.append("")
    for label, h in analysis.leakage["held_out"].items():
        what = "the same weights" if label == "weights" else "the same weights or family"
        lines += [f"**Held-out Total ({what} left out)**: without {', '.join(h['excluded'])} for every model "
                  "(each group's weights renormalised), with the same resamples.", "",
                  f"| model | held-out Total | 95% CI | Δ vs {analysis.reference or 'reference'} | 95% CI |", "|:---|---:|:---|---:|:---|"]
        for m, r in h["models"].items():
            delta = f"{r['delta']:+.2f}" if "delta" in r else "—"
            lines.append(f"| {m} | {r['total']:.2f} | {_ci(r['ci'])} | {delta} | {_ci(r.get('delta_ci'))} |")
        lines.append("")
    return lines


def pairs_plot(analysis: Analysis) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.report import _png_bytes

    names = analysis.design.names
    k = len(names)
    mat = np.full((k, k), np.nan)
    sig = np.zeros((k, k), dtype=bool)
    for r in analysis.pairs:
        if r["metric"] != "total_score":
            continue
        i, j = names.index(r["a"]), names.index(r["b"])
        mat[i, j], mat[j, i] = r["difference"], -r["difference"]
        sig[i, j] = sig[j, i] = math.isfinite(r["p_holm"]) and r["p_holm"] < 0.05
    lim = np.nanmax(np.abs(mat)) if np.isfinite(mat).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.0 * k + 1.5))
    im = ax.imshow(mat, cmap="RdBu", vmin=-lim, vmax=lim)
    for i in range(k):
        for j in range(k):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:+.1f}{'*' if sig[i, j] else ''}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(k), names, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_title("ΔTotal, row − column (points); * Holm-adjusted p < 0.05", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    data = _png_bytes(fig)
    plt.close(fig)
    return data


def analysis_json(analysis: Analysis) -> dict:
    return {"pairs": pair_rows(analysis), "detectable_effects": analysis.mde, "seeds": analysis.seeds,
            "leakage": analysis.leakage, "bootstrap": {"resamples": analysis.n, "seed": analysis.seed}}


# --------------------------------------------------------------------------------------
# The verb


def _config_of(model: Any) -> Mapping | None:
    """The training config of a results folder inside a run directory (RUN/scores/<label>/)."""
    run_json = Path(model.folder).resolve().parent.parent / "run.json"
    if not run_json.is_file():
        return None
    try:
        record = json.loads(run_json.read_text())
    except (OSError, ValueError):
        return None
    return record.get("config") if record.get("kind") == "train" else None


def compare_command(paths: list[Path], out: Path, bootstrap: int, seed: int) -> list[Path]:
    import pandas as pd

    from bench.report import ReportInputError, _write_atomic, build_report, load_all, markdown_table

    models = load_all(paths)
    if len(models) < 2:
        raise ReportInputError(Path(paths[0]), "bench compare needs at least two models")
    try:
        analysis = analyse({m.name: [m] for m in models}, bootstrap, seed, {m.name: _config_of(m) for m in models},
                           reference=models[0].name)
    except ValueError as err:
        raise ReportInputError(Path(paths[0]), str(err)) from err
    report = build_report(models)
    comp = report.table[["model", *COMPOSITES]]
    lines = ["# Comparison", "", f"{len(models)} models on benchmark `{analysis.design.benchmark}`, paired by prompt and "
             f"video index over the prompts every model has; bootstrap seed {seed}.", "", markdown_table(comp), "",
             *markdown_sections(analysis)]
    prefix = Path(out)
    files = {
        prefix.with_name(prefix.name + ".md"): "\n".join(lines).encode(),
        prefix.with_name(prefix.name + "_pairs.csv"): pd.DataFrame(pair_rows(analysis)).to_csv(index=False).encode(),
        prefix.with_name(prefix.name + ".json"): json.dumps(json_safe(analysis_json(analysis)), indent=2,
                                                            allow_nan=False, default=_json_default).encode(),
        prefix.with_name(prefix.name + "_pairs.png"): pairs_plot(analysis),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
    return list(files)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def register(app: Any) -> None:
    import typer

    @app.command("compare")
    def compare(
        paths: list[Path] = typer.Argument(..., metavar="PATH", help="Results folders or run directories (two or more models)."),
        out: Path = typer.Option(..., "--out", "-o", metavar="PREFIX", help="Writes PREFIX.md, PREFIX_pairs.csv, PREFIX.json, PREFIX_pairs.png."),
        bootstrap: int = typer.Option(2000, "--bootstrap", min=100, help="Bootstrap resamples and permutations."),
        seed: int = typer.Option(0, "--seed", help="Seed of the resampling (recorded in PREFIX.json)."),
    ) -> None:
        """Every pair of models: paired differences with 95% intervals, permutation p-values (Holm), the
        minimum detectable effect and the reward/judge leakage audit. Models are paired by prompt and video index."""
        from rich.console import Console
        from rich.text import Text

        # A ReportInputError goes to bench's one handler (bench/console.py): exit 2, "nothing was written."
        written = compare_command(paths, out, bootstrap, seed)
        for path in written:
            Console().print(Text(f"wrote {path}"), soft_wrap=True)
