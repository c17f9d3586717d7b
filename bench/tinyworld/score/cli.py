"""The `bench score tiny` verb."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from bench.errors import Interrupted
from bench.scoring import results
from bench.scoring.results import read_complete_result, resolve_videos, result_path
from bench.tinyworld.score.suite import BENCHMARK, TinyScoreError
from bench.tinyworld.score.evaluation import resolve_dimensions
from bench.tinyworld.score.outputs import score_tiny


def default_out_dir(videos_dir: Path, label: str) -> Path:
    """`RUN/scores/<label>-tiny/` for a run's videos, else `<videos-dir>-tiny` beside it."""
    return results.default_out_dir(videos_dir, label, BENCHMARK)


def tiny_command(
    run: Optional[Path] = results.run_option(),
    videos: Optional[str] = results.videos_option(),
    videos_dir: Optional[Path] = results.videos_dir_option(),
    dimension: Optional[list[str]] = typer.Option(None, "--dimension", "-d", help="Dimension; repeatable (default: all 16)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN/scores/<label>-tiny/)."),
    zoo: Optional[Path] = typer.Option(None, "--zoo", help="Tiny-world zoo (default: $BENCH_TINY_ZOO or the shipped one)."),
    force: bool = typer.Option(False, "--force", help="Recompute dimensions that already have a complete result."),
    threads: int = typer.Option(1, "--threads", help="torch intra-op threads (1 is fastest beside other jobs)."),
) -> None:
    """Score tiny-world videos with the tiny benchmark (VBench's 16 dimensions, tiny evaluators)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    err, out_console = Console(stderr=True), Console()
    try:
        if threads < 1:
            raise TinyScoreError(f"--threads must be >= 1, got {threads}")
        vdir, label = resolve_videos(run, videos, videos_dir)
        dims = resolve_dimensions(dimension)
        out_dir = (out or default_out_dir(vdir, label)).resolve()
        import torch

        torch.set_num_threads(max(1, threads))
        for d in dims:
            if not force and read_complete_result(result_path(out_dir, d), d) is not None:
                err.print(f"[dim]{d}: already scored, skipped (--force redoes it)[/]", soft_wrap=True)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True) as progress:
            summary = score_tiny(vdir, out_dir, dims, progress=progress, force=force, zoo=zoo, label=label,
                                 command=" ".join(["bench", *sys.argv[1:]]))
    except KeyboardInterrupt:
        raise Interrupted("interrupted; rerun the same command to resume (finished dimensions are kept)") from None
    # Any other error (TinyScoreError's code, ...) goes to bench's one handler (bench/console.py).

    table = Table(title=f"tiny benchmark — {label}", show_header=True)
    table.add_column("dimension")
    table.add_column("score", justify="right")
    for d, v in summary.items():
        table.add_row(d, f"{v:.4f}")
    out_console.print(table)
    out_console.print(f"results: {out_dir}", soft_wrap=True)
