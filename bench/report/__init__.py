"""`bench report`: VBench results of one or more models -> one table (CSV, markdown) and plots.

Library part (no printing): `load_results` reads result folders and run directories,
`composite_scores` applies VBench's aggregation, `build_report` makes the table and
`write_report` writes it. The CLI part (`register`) is the only place that prints.

Aggregation follows Vchitect/VBench `scripts/cal_final_score.py` with the constants of
`scripts/constant.py` (copied as data into `bench.vbench.constants`):
normalise every raw dimension value with its (min, max), take the weighted mean of the 7
quality dimensions (Quality) and of the 9 semantic dimensions (Semantic), and
Total = (4 * Quality + 1 * Semantic) / 5.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from t2v_turbo_core.safe_io import atomic_write_bytes
from bench.errors import RUN_FAILED, BenchError
from bench.vbench.constants import (
    AGGREGATION_TABLES,
    QUALITY_DIMENSIONS,
    SEMANTIC_DIMENSIONS,
    VBENCH_DIMENSIONS,
    AggregationTable,
)

if TYPE_CHECKING:  # pandas and matplotlib are imported where used, to keep `bench --help` fast
    import pandas as pd
    import typer

RESULT_GLOB = "*_eval_results.json"  # VBench writes one `{name}_eval_results.json` per evaluate call
SCORING_FILE = "bench_scoring.json"  # docs/conventions.md: says which benchmark produced the folder
DEFAULT_BENCHMARK = "vbench"  # docs/conventions.md: a folder without SCORING_FILE is VBench's
COMPOSITE_COLUMNS = ("total_score", "quality_score", "semantic_score")
REPORT_COLUMNS = ("model", *COMPOSITE_COLUMNS, *VBENCH_DIMENSIONS)
MISSING_MARK = "—"  # how the markdown shows an empty cell (an incomplete composite, a missing dim)


class ReportInputError(BenchError, ValueError):
    """A result file or folder that cannot be reported; `path` names it (exit 2)."""

    note = "nothing was written."

    def __init__(self, path: Path, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class ModelResults:
    """One model's VBench results, gathered from one results folder.

    `dimensions` holds each dimension's aggregate as VBench stores it (a fraction);
    `per_video` the per-video list VBench stores beside it; `benchmark` is "vbench" or "tiny".
    """

    name: str
    dimensions: Mapping[str, float]
    per_video: Mapping[str, list[Any]]
    benchmark: str
    source_files: tuple[Path, ...]
    folder: Path
    # Protocol caveats `bench score vbench` recorded (.bench/scoring.json), e.g. an
    # unfiltered temporal_flickering; shown under the table.
    notes: tuple[str, ...] = ()

    @property
    def missing_dimensions(self) -> tuple[str, ...]:
        table = aggregation_table(self.benchmark)
        return tuple(d for d in table.dimensions if d not in self.dimensions)

    def composite_scores(self) -> dict[str, float] | None:
        return composite_scores(self.dimensions, self.benchmark)


# --------------------------------------------------------------------------------------
# Aggregation (pure functions)


def aggregation_table(benchmark: str) -> AggregationTable:
    """The constant table of `benchmark` ("vbench" or "tiny")."""
    try:
        return AGGREGATION_TABLES[benchmark]
    except KeyError:
        known = ", ".join(sorted(AGGREGATION_TABLES))
        raise ValueError(f"unknown benchmark {benchmark!r} (known: {known})") from None


def normalize(raw: float, minimum: float, maximum: float) -> float:
    """VBench's min-max normalisation, `(raw - min) / (max - min)`, not clipped.

    Source: Vchitect/VBench scripts/cal_final_score.py, `get_nomalized_score`.
    """
    return (raw - minimum) / (maximum - minimum)


def weighted_mean(values: Mapping[str, float], weights: Mapping[str, float], dims: Sequence[str]) -> float:
    """`sum_d w_d * v_d / sum_d w_d` over `dims`.

    Source: Vchitect/VBench scripts/cal_final_score.py, `get_quality_score` and
    `get_semantic_score` (the weight is applied to each normalised value, then the sum is
    divided by the sum of the group's weights).
    """
    return sum(weights[d] * values[d] for d in dims) / sum(weights[d] for d in dims)


def total_score(quality: float, semantic: float, table: AggregationTable) -> float:
    """`(4 * Quality + 1 * Semantic) / (4 + 1)` for VBench.

    Source: Vchitect/VBench scripts/cal_final_score.py, `get_final_score`, with
    QUALITY_WEIGHT = 4 and SEMANTIC_WEIGHT = 1 from scripts/constant.py.
    """
    return (table.quality_weight * quality + table.semantic_weight * semantic) / (
        table.quality_weight + table.semantic_weight
    )


def normalized_dimensions(dim_values: Mapping[str, float], table: AggregationTable) -> dict[str, float]:
    """Every dimension present in `dim_values`, normalised with `table`'s (min, max)."""
    return {d: normalize(v, *table.normalization[d]) for d, v in dim_values.items()}


def composite_scores(dim_values: Mapping[str, float], benchmark: str = DEFAULT_BENCHMARK) -> dict[str, float] | None:
    """Total, Quality and Semantic of one model as fractions (x100 for tables), or None.

    `dim_values` maps dimension names (VBench's result-file spelling, e.g.
    "subject_consistency") to raw aggregates as fractions. Returns None when any of the 16
    dimensions is missing: a missing dimension is never counted as 0 (VBench's script
    would fill it with 0; a report that did so would understate the model silently).

    Source: Vchitect/VBench scripts/cal_final_score.py with scripts/constant.py
    (see `bench.vbench.constants` for the tables).
    """
    table = aggregation_table(benchmark)
    unknown = sorted(set(dim_values) - set(table.dimensions))
    if unknown:
        raise ValueError(f"unknown dimension(s) for benchmark {benchmark!r}: {', '.join(unknown)}")
    if any(d not in dim_values for d in table.dimensions):
        return None
    normalized = normalized_dimensions(dim_values, table)
    quality = weighted_mean(normalized, table.weights, table.quality_dimensions)
    semantic = weighted_mean(normalized, table.weights, table.semantic_dimensions)
    return {
        "total_score": total_score(quality, semantic, table),
        "quality_score": quality,
        "semantic_score": semantic,
    }


# --------------------------------------------------------------------------------------
# Reading results


def _read_json(path: Path) -> Any:
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ReportInputError(path, f"cannot read the file ({e})") from None
    except json.JSONDecodeError as e:
        raise ReportInputError(path, f"not valid JSON ({e})") from None


def _read_benchmark(folder: Path) -> str:
    scoring = folder / SCORING_FILE
    if not scoring.exists():
        return DEFAULT_BENCHMARK
    data = _read_json(scoring)
    benchmark = data.get("benchmark") if isinstance(data, dict) else None
    if benchmark not in AGGREGATION_TABLES:
        known = " or ".join(repr(b) for b in sorted(AGGREGATION_TABLES))
        raise ReportInputError(scoring, f'"benchmark" must be {known}, found {benchmark!r}')
    return benchmark


HARNESS_SCORING = Path(".bench") / "scoring.json"  # bench/vbench/score.py's per-dimension record


def _protocol_notes(folder: Path, dimensions: Sequence[str]) -> tuple[str, ...]:
    """What `bench score vbench` recorded about how the folder's dimensions were scored."""
    try:
        data = json.loads((folder / HARNESS_SCORING).read_text(encoding="utf-8"))
        records = data["dimensions"]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    if not isinstance(records, dict):
        return ()
    notes = []
    tf = records.get("temporal_flickering")
    if "temporal_flickering" in dimensions and isinstance(tf, dict):
        filt = tf.get("static_filter")
        if isinstance(filt, dict) and filt.get("ran") is False:
            notes.append("temporal_flickering was scored without VBench's static filter "
                         "(not the leaderboard protocol)")
    custom = [d for d in dimensions if isinstance(records.get(d), dict)
              and (records[d].get("inputs") or {}).get("mode") == "custom_input"]
    if custom:
        notes.append(f"{', '.join(custom)}: scored in VBench's custom_input mode (own prompts; "
                     "not comparable with the leaderboard)")
    return tuple(notes)


def _read_result_file(path: Path, table: AggregationTable) -> dict[str, tuple[float, list[Any]]]:
    """One `*_eval_results.json`: {dimension: (aggregate, per-video list)}, validated."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ReportInputError(path, "expected a JSON object {dimension: [aggregate, per_video_list]}")
    out: dict[str, tuple[float, list[Any]]] = {}
    for dim, entry in data.items():
        if dim not in table.dimensions:
            raise ReportInputError(
                path, f"unknown dimension {dim!r} (a {table.name} result has: {', '.join(table.dimensions)})"
            )
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            raise ReportInputError(path, f"{dim}: expected [aggregate, per_video_list]")
        aggregate = entry[0]
        if isinstance(aggregate, bool) or not isinstance(aggregate, (int, float)):
            raise ReportInputError(path, f"{dim}: aggregate {aggregate!r} is not a number")
        # VBench stores every aggregate as a fraction (per-video imaging_quality values may be
        # 0-100, but those are not checked here).
        if not (math.isfinite(aggregate) and 0.0 <= aggregate <= 1.0):
            raise ReportInputError(path, f"{dim}: aggregate {aggregate!r} is outside [0, 1]")
        out[dim] = (float(aggregate), entry[1])
    return out


def load_results_folder(folder: Path, name: str | None = None) -> ModelResults:
    """One model from one folder of `*_eval_results.json` files (+ optional bench_scoring.json).

    Dimensions may be spread over several files; the same dimension in two files must have
    the same aggregate.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportInputError(folder, "not a directory")
    files = sorted(folder.glob(RESULT_GLOB))
    if not files:
        raise ReportInputError(folder, f"no result files ({RESULT_GLOB}) in this folder")
    benchmark = _read_benchmark(folder)
    table = aggregation_table(benchmark)
    dimensions: dict[str, float] = {}
    per_video: dict[str, list[Any]] = {}
    origin: dict[str, Path] = {}
    for path in files:
        for dim, (aggregate, videos) in _read_result_file(path, table).items():
            if dim in dimensions:
                if dimensions[dim] != aggregate:
                    raise ReportInputError(
                        path,
                        f"{dim} = {aggregate!r} here but {dimensions[dim]!r} in {origin[dim]}; "
                        "remove one of the two results",
                    )
                continue
            dimensions[dim] = aggregate
            per_video[dim] = videos
            origin[dim] = path
    ordered = [d for d in table.dimensions if d in dimensions]
    return ModelResults(
        name=name if name is not None else folder.resolve().name,
        dimensions={d: dimensions[d] for d in ordered},
        per_video={d: per_video[d] for d in ordered},
        benchmark=benchmark,
        source_files=tuple(files),
        folder=folder,
        notes=_protocol_notes(folder, ordered),
    )


def is_run_directory(path: Path) -> bool:
    """A run directory (docs/conventions.md) has `scores/` and no result files of its own."""
    return (path / "scores").is_dir() and not any(path.glob(RESULT_GLOB))


def load_results(path: str | os.PathLike[str]) -> list[ModelResults]:
    """The models found at `path`: a results folder (one model, named after the folder) or
    a run directory `runs/<run>/` (one model per `scores/<label>/`, named `<run>/<label>`,
    or `<run>` when there is only one label).

    Raises ReportInputError (naming the file or folder) on anything that cannot be reported.
    """
    path = Path(path)
    if not path.exists():
        raise ReportInputError(path, "no such file or directory")
    if not path.is_dir():
        raise ReportInputError(path, "expected a results folder or a run directory, not a file")
    if not is_run_directory(path):
        return [load_results_folder(path)]
    scores = path / "scores"
    labels = sorted(p for p in scores.iterdir() if p.is_dir())
    if not labels:
        raise ReportInputError(scores, "no scores/<label>/ folders in this run directory")
    run = path.resolve().name
    if len(labels) == 1:
        return [load_results_folder(labels[0], name=run)]
    return [load_results_folder(label, name=f"{run}/{label.name}") for label in labels]


def load_all(paths: Sequence[str | os.PathLike[str]]) -> list[ModelResults]:
    """`load_results` over several paths; model names must come out unique."""
    models: list[ModelResults] = []
    seen: dict[str, Path] = {}
    for p in paths:
        for model in load_results(p):
            if model.name in seen:
                raise ReportInputError(
                    model.folder,
                    f"model name {model.name!r} is also the name of {seen[model.name]}; "
                    "pass the run directories instead, or rename one folder",
                )
            seen[model.name] = model.folder
            models.append(model)
    return models


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


# --------------------------------------------------------------------------------------
# CLI

REPORT_HELP = """Aggregate VBench results of one or more models into one table and plots.

Each PATH is one model: a results folder holding one or more VBench `*_eval_results.json` files (and optionally `bench_scoring.json`), or a run directory `runs/<run>/`, where every `scores/<label>/` folder becomes one row named `<run>/<label>` (just `<run>` if there is only one).

Writes PREFIX.csv (full precision), PREFIX.md (2 decimals), PREFIX_dimensions.png and PREFIX_composites.png, and prints the table. Values are percentages: dimensions are raw values x100; Total, Quality and Semantic use VBench's normalisation (Vchitect/VBench scripts/constant.py), Total = (4 Quality + 1 Semantic) / 5. A model missing a dimension gets no composite scores (and a warning). Unreadable or invalid input: exit code 2, nothing written.

Example: bench report runs/turbo_vc2 results/videocrafter2 --out reports/main
"""


def _print_table(console: Any, report: Report) -> None:
    # Two tables so that a terminal fits them: the composites one row per model, then the
    # dimensions with one narrow column per model (numbered as in the first table).
    from rich import box
    from rich.table import Table

    table = report.table
    composites = Table(title="VBench composite scores (%)", box=box.SIMPLE_HEAD)
    composites.add_column("#", justify="right", style="dim")
    composites.add_column("model", overflow="fold")
    for column in table.columns[1:]:
        if column not in VBENCH_DIMENSIONS:
            header = column.replace("_score", "").capitalize() if column in COMPOSITE_COLUMNS else str(column)
            composites.add_column(header, justify="right")
    for i, row in enumerate(table.itertuples(index=False, name=None), start=1):
        cells = [_markdown_cell(v) for c, v in zip(table.columns, row) if c not in VBENCH_DIMENSIONS]
        composites.add_row(str(i), *cells)
    console.print(composites)

    dims = Table(title="VBench dimensions (%), raw values x100", box=box.SIMPLE_HEAD, collapse_padding=True)
    dims.add_column("dimension", no_wrap=True)
    for i in range(1, len(table) + 1):
        dims.add_column(f"#{i}", justify="right", no_wrap=True)
    for dim in VBENCH_DIMENSIONS:
        dims.add_row(dim, *(_markdown_cell(v) for v in table[dim]),
                     end_section=dim == QUALITY_DIMENSIONS[-1])
    console.print(dims)


def report_command(
    paths: list[Path],
    out: Path,
) -> None:
    from rich.console import Console
    from rich.text import Text

    stdout, stderr = Console(), Console(stderr=True)
    # A ReportInputError goes to bench's one handler (bench/console.py): exit 2, "nothing was written."
    models = load_all(paths)
    report = build_report(models)
    for name, missing in report.incomplete.items():
        stderr.print(
            Text("warning: ", style="bold yellow")
            + Text(f"{name} is missing {len(missing)} dimension(s): {', '.join(missing)}; "
                   "its total/quality/semantic scores are left empty."),
            soft_wrap=True,
        )
    for m in models:
        for n in m.notes:
            stderr.print(Text("note: ", style="bold yellow") + Text(f"{m.name}: {n}"), soft_wrap=True)
    kinds = mixed_benchmarks(models)
    if kinds:
        stderr.print(
            Text("warning: ", style="bold yellow")
            + Text(f"the report mixes benchmarks ({', '.join(kinds)}); their composite scores "
                   "use different normalisations and do not compare."),
            soft_wrap=True,
        )
    try:
        written = write_report(report, out)
    except OSError as e:
        raise BenchError(f"cannot write the report: {e}", code=RUN_FAILED) from None
    _print_table(stdout, report)
    for path in written:
        stdout.print(Text(f"wrote {path}"), soft_wrap=True)


def register(app: "typer.Typer") -> None:
    """Add `bench report` to the CLI."""
    import typer

    def report(
        paths: list[Path] = typer.Argument(
            ..., metavar="PATH", show_default=False,
            help="Results folders (*_eval_results.json) or run directories (runs/<run>/).",
        ),
        out: Path = typer.Option(
            ..., "--out", "-o", metavar="PREFIX", show_default=False,
            help="Output prefix: writes PREFIX.csv, PREFIX.md, PREFIX_*.png (parent folders are created).",
        ),
    ) -> None:
        report_command(paths, out)

    report.__doc__ = REPORT_HELP
    app.command("report", help=REPORT_HELP, short_help="Aggregate VBench results into a CSV/markdown table and plots.")(report)
