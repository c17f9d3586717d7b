"""`bench report`: VBench results of one or more models -> one table (CSV, markdown) and plots.

Library part (no printing; `aggregate.py`, `load.py`, `document.py`): `load_results` reads result folders and run directories,
`composite_scores` applies VBench's aggregation, `build_report` makes the table and
`write_report` writes it. The CLI part (`register`) is the only place that prints.

Aggregation follows Vchitect/VBench `scripts/cal_final_score.py` with the constants of
`scripts/constant.py` (copied as data into `bench.vbench.constants`):
normalise every raw dimension value with its (min, max), take the weighted mean of the 7
quality dimensions (Quality) and of the 9 semantic dimensions (Semantic), and
Total = (4 * Quality + 1 * Semantic) / 5.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import RUN_FAILED, BenchError
from bench.vbench.constants import QUALITY_DIMENSIONS, VBENCH_DIMENSIONS

if TYPE_CHECKING:  # pandas and matplotlib are imported where used, to keep `bench --help` fast
    import typer

# The package's names, as before it was split along its sections: aggregation
# (bench/report/aggregate.py), reading results (load.py), the report document (document.py);
# this module keeps the CLI.
from bench.report.aggregate import (  # noqa: F401
    RESULT_GLOB,
    SCORING_FILE,
    DEFAULT_BENCHMARK,
    COMPOSITE_COLUMNS,
    REPORT_COLUMNS,
    MISSING_MARK,
    ReportInputError,
    ModelResults,
    aggregation_table,
    normalize,
    weighted_mean,
    total_score,
    normalized_dimensions,
    composite_scores,
)
from bench.report.load import (  # noqa: F401
    _read_json,
    _read_benchmark,
    HARNESS_SCORING,
    _protocol_notes,
    _read_result_file,
    load_results_folder,
    is_run_directory,
    load_results,
    load_all,
)
from bench.report.document import (  # noqa: F401
    Report,
    report_table,
    _markdown_cell,
    markdown_table,
    _markdown_document,
    _pretty,
    _png_bytes,
    _model_colors,
    plot_dimensions,
    plot_composites,
    PLOTS,
    build_report,
    output_paths,
    _write_atomic,
    write_report,
    mixed_benchmarks,
)


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
