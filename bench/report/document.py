"""The report itself: the table, its markdown, the plots, and writing them atomically."""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from t2v_turbo_core.safe_io import atomic_write_bytes
from bench.vbench.constants import (
    QUALITY_DIMENSIONS,
    SEMANTIC_DIMENSIONS,
    VBENCH_DIMENSIONS,
)

if TYPE_CHECKING:  # pandas and matplotlib are imported where used, to keep `bench --help` fast
    import pandas as pd
from bench.report.aggregate import (
    COMPOSITE_COLUMNS,
    REPORT_COLUMNS,
    MISSING_MARK,
    ModelResults,
    aggregation_table,
)


# --------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class Report:
    """Everything `write_report` writes, computed in memory first."""

    table: "pd.DataFrame"  # percentages, full precision; NaN where empty
    markdown: str
    plots: Mapping[str, bytes] = field(default_factory=dict)  # file suffix -> PNG bytes
    incomplete: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # model -> missing dims


def report_table(models: Sequence[ModelResults], extra_columns: Mapping[str, Sequence[Any]] | None = None) -> "pd.DataFrame":
    """One row per model: model, [extra columns], total/quality/semantic, the 16 dimensions.

    Dimension columns are raw values x100 (as VBench's leaderboard shows them); the composite
    columns are computed from normalised values, x100; NaN where a model has no value.
    `extra_columns` maps a column name to one value per model (in `models` order).
    """
    import pandas as pd

    extra = dict(extra_columns or {})
    for column, values in extra.items():
        if column in REPORT_COLUMNS:
            raise ValueError(f"extra column {column!r} clashes with a report column")
        if len(values) != len(models):
            raise ValueError(f"extra column {column!r} has {len(values)} values for {len(models)} models")
    rows = []
    for i, model in enumerate(models):
        row: dict[str, Any] = {"model": model.name}
        for column, values in extra.items():
            row[column] = values[i]
        composites = model.composite_scores()
        for column in COMPOSITE_COLUMNS:
            row[column] = 100.0 * composites[column] if composites is not None else math.nan
        for dim in VBENCH_DIMENSIONS:
            row[dim] = 100.0 * model.dimensions[dim] if dim in model.dimensions else math.nan
        rows.append(row)
    columns = ["model", *extra, *COMPOSITE_COLUMNS, *VBENCH_DIMENSIONS]
    return pd.DataFrame(rows, columns=columns)


def _markdown_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_MARK
    if isinstance(value, float):
        return f"{value:.2f}"  # the paper's tables: percentages to 2 decimals
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: "pd.DataFrame") -> str:
    """A GitHub-flavoured markdown table; numbers to 2 decimals, empty cells as "—"."""
    numeric = {c for c in table.columns if c in COMPOSITE_COLUMNS or c in VBENCH_DIMENSIONS}
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    align = "|" + "|".join("---:" if c in numeric else ":---" for c in table.columns) + "|"
    body = [
        "| " + " | ".join(_markdown_cell(v) for v in row) + " |"
        for row in table.itertuples(index=False, name=None)
    ]
    return "\n".join([header, align, *body])


def _markdown_document(models: Sequence[ModelResults], table: "pd.DataFrame") -> str:
    benchmarks = sorted({m.benchmark for m in models})
    sources = "; ".join(f"{b}: {aggregation_table(b).source}" for b in benchmarks)
    lines = [
        "# VBench report",
        "",
        "Percentages. Dimension columns: raw VBench values x100. total_score, quality_score,",
        "semantic_score: computed from normalised dimension values, x100, with",
        f"Total = (4 Quality + 1 Semantic) / 5. Constants: {sources}.",
        f"{MISSING_MARK}: not available; a model missing a dimension has no composite scores.",
        "",
        markdown_table(table),
        "",
    ]
    noted = [(m.name, n) for m in models for n in m.notes]
    if noted:
        lines += ["Notes:", *(f"* {name}: {n}." for name, n in noted), ""]
    return "\n".join(lines)


def _pretty(dim: str) -> str:
    return dim.replace("_", " ")


def _png_bytes(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def _model_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_dimensions(table: "pd.DataFrame") -> bytes:
    """Grouped bars: the 16 dimensions side by side, one bar per model (PNG bytes).

    Two panels, the 7 quality dimensions above the 9 semantic ones, so that the figure
    stays readable with many models.
    """
    from matplotlib.figure import Figure

    names = list(table["model"])
    n = max(len(names), 1)
    colors = _model_colors(n)
    group = 0.84
    width = group / n
    panel_width = max(12.0, len(SEMANTIC_DIMENSIONS) * (0.2 * n + 0.45))
    fig = Figure(figsize=(panel_width, 10.5), layout="constrained")
    panels = fig.subplots(2, 1)
    for ax, (title, dims) in zip(
        panels, (("Quality dimensions", QUALITY_DIMENSIONS), ("Semantic dimensions", SEMANTIC_DIMENSIONS))
    ):
        for i, name in enumerate(names):
            values = [table.iloc[i][d] for d in dims]
            xs = [k - group / 2 + width * (i + 0.5) for k in range(len(dims))]
            present = [(x, v) for x, v in zip(xs, values) if not math.isnan(v)]
            bars = ax.bar([x for x, _ in present], [v for _, v in present], width=width * 0.92,
                          color=colors[i], label=name, zorder=2)
            if n <= 8:
                ax.bar_label(bars, labels=[f"{v:.1f}" for _, v in present], rotation=90,
                             padding=2, fontsize=7)
            for x, v in zip(xs, values):
                if math.isnan(v):
                    ax.text(x, 1.5, "n/a", rotation=90, ha="center", va="bottom", fontsize=7,
                            color="0.4")
        # The semantic panel has more groups; equal x-limits keep bar widths equal.
        ax.set_xlim(-0.6, len(SEMANTIC_DIMENSIONS) - 0.4)
        ax.set_xticks(range(len(dims)), [_pretty(d) for d in dims], rotation=25, ha="right",
                      rotation_mode="anchor", fontsize=10)
        ax.set_ylim(0, 112)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("raw value (%)")
        ax.grid(axis="y", color="0.85", zorder=1)
        ax.set_axisbelow(True)
        ax.set_title(title, fontsize=11, loc="left", weight="bold")
    fig.suptitle("VBench dimensions per model", fontsize=13)
    fig.legend(*panels[0].get_legend_handles_labels(), loc="outside lower center",
               ncol=min(n, 4), frameon=False)
    return _png_bytes(fig)


def plot_composites(table: "pd.DataFrame") -> bytes:
    """Grouped bars: Total, Quality and Semantic for each model (PNG bytes)."""
    from matplotlib.figure import Figure

    names = list(table["model"])
    n = max(len(names), 1)
    group = 0.8
    width = group / len(COMPOSITE_COLUMNS)
    fig = Figure(figsize=(max(7.0, 1.6 * n + 2.5), 5.5))
    ax = fig.add_subplot()
    colors = ["#1f4e79", "#5b9bd5", "#ed7d31"]
    for j, (column, color) in enumerate(zip(COMPOSITE_COLUMNS, colors)):
        xs = [k - group / 2 + width * (j + 0.5) for k in range(len(names))]
        values = list(table[column])
        present = [(x, v) for x, v in zip(xs, values) if not math.isnan(v)]
        bars = ax.bar([x for x, _ in present], [v for _, v in present], width=width * 0.95,
                      color=color, label=column.replace("_score", "").capitalize(), zorder=2)
        ax.bar_label(bars, labels=[f"{v:.2f}" for _, v in present], padding=2, fontsize=8)
    for k, name in enumerate(names):
        if math.isnan(table.iloc[k]["total_score"]):
            ax.text(k, 5, "incomplete:\nmissing\ndimensions", ha="center", va="bottom", fontsize=8,
                    color="0.35")
    ax.set_xticks(range(len(names)), names, rotation=20 if n > 3 else 0,
                  ha="right" if n > 3 else "center", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(0, 110)
    ax.set_ylabel("score (%)")
    ax.grid(axis="y", color="0.85", zorder=1)
    ax.set_axisbelow(True)
    ax.set_title("VBench Total / Quality / Semantic per model")
    ax.legend(loc="upper right", ncol=3, frameon=False)
    return _png_bytes(fig)


PLOTS = {"_dimensions.png": plot_dimensions, "_composites.png": plot_composites}


def build_report(models: Sequence[ModelResults], extra_columns: Mapping[str, Sequence[Any]] | None = None) -> Report:
    """The table, its markdown and the plots, all in memory (nothing is written)."""
    if not models:
        raise ValueError("no models to report")
    table = report_table(models, extra_columns)
    return Report(
        table=table,
        markdown=_markdown_document(models, table),
        plots={suffix: render(table) for suffix, render in PLOTS.items()},
        incomplete={m.name: m.missing_dimensions for m in models if m.missing_dimensions},
    )


def output_paths(out_prefix: str | os.PathLike[str]) -> list[Path]:
    """The files `write_report` writes for `out_prefix`."""
    prefix = Path(out_prefix)
    suffixes = [".csv", ".md", *PLOTS]
    return [prefix.with_name(prefix.name + s) for s in suffixes]


_write_atomic = atomic_write_bytes  # (the one atomic writer: t2v_turbo_core/safe_io.py)


def write_report(
    models: Sequence[ModelResults] | Report,
    out_prefix: str | os.PathLike[str],
    extra_columns: Mapping[str, Sequence[Any]] | None = None,
) -> list[Path]:
    """Write `PREFIX.csv`, `PREFIX.md`, `PREFIX_dimensions.png`, `PREFIX_composites.png`.

    Everything is computed before the first file is written; each file is written
    atomically; parent folders of PREFIX are created. Returns the paths written.
    Pass a `Report` from `build_report` to write one already computed.
    """
    report = models if isinstance(models, Report) else build_report(models, extra_columns)
    csv_path, md_path, *plot_paths = output_paths(out_prefix)
    contents = {
        csv_path: report.table.to_csv(index=False).encode("utf-8"),
        md_path: report.markdown.encode("utf-8"),
        **{p: report.plots[s] for p, s in zip(plot_paths, PLOTS)},
    }
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    for path, data in contents.items():
        _write_atomic(path, data)
    return list(contents)


def mixed_benchmarks(models: Sequence[ModelResults]) -> list[str]:
    """The benchmark kinds present, when more than one (their composites do not compare)."""
    kinds = sorted({m.benchmark for m in models})
    return kinds if len(kinds) > 1 else []
