"""The `bench score vbench` verb."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from bench.errors import Interrupted
from bench.scoring import results
from bench.scoring.results import ScoreError, resolve_videos
from bench.vbench.score.inputs import (
    DEFAULT_TIMEOUT_S, DimensionsFailed, default_out_dir, err_console, resolve_dimensions,
)
from bench.vbench.score.publish import export_zip
from bench.vbench.score.flow import score


out_console = Console()


def vbench_command(
    run: Optional[Path] = results.run_option(),
    videos: Optional[str] = results.videos_option(),
    videos_dir: Optional[Path] = results.videos_dir_option(),
    dimension: Optional[list[str]] = typer.Option(None, "--dimension", "-d", help="VBench dimension; repeatable (default: all 16; in custom_input mode the 10 VBench supports there)."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cuda:N or cpu (default: cuda if available)."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Score different dimensions at once, one per device: CUDA indices (0,1,...) or cpu entries."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN/scores/<label>-vbench/)."),
    force: bool = typer.Option(False, "--force", help="Recompute dimensions that already have a complete, current result."),
    static_filter: Optional[bool] = typer.Option(
        None, "--static-filter/--no-static-filter",
        help="Run VBench's static_filter on the temporal_flickering videos and score the static ones it keeps "
             "(default: on when 25-per-prompt videos, -5..-24, are present). Needs RAFT weights; VBench's filter "
             "is written for CUDA (on CPU the harness runs it with the device set to cpu)."),
    mode: str = typer.Option("vbench_standard", "--mode", help="vbench_standard (VBench's prompt suite) or custom_input (any prompts, e.g. from `bench generate --prompt-file`; prompts from its manifest, else from the file names)."),
    full_info: Optional[Path] = typer.Option(None, "--full-info", help="VBench's prompt-suite file to use (default: the one inside the vbench package)."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", help="Seconds one VBench subprocess may run before it is stopped (0: no limit)."),
    export_zip_path: Optional[Path] = typer.Option(None, "--export-zip", help="Also pack VBench's result files (only those) into this zip, the submission layout."),
    skip_hash_check: bool = typer.Option(False, "--skip-hash-check", help="Accept weight files whose sha256 differs from the published one (your own conversions); the presence and truncated-archive checks stay."),
) -> None:
    """Score videos with the official VBench package (its own env, created on first use)."""
    summary: dict[str, float] = {}
    label, out_dir = "", None
    try:
        if not math.isfinite(timeout) or timeout < 0:
            raise ScoreError(f"--timeout {timeout}: must be a finite number of seconds >= 0")
        vdir, label = resolve_videos(run, videos, videos_dir)
        dims = resolve_dimensions(dimension, mode)
        out_dir = (out or default_out_dir(vdir, label)).resolve()
        try:
            summary = score(vdir, label, out_dir, dims, device, force, " ".join(["bench", *sys.argv[1:]]),
                            static_filter=static_filter, mode=mode, full_info=full_info,
                            timeout_s=timeout or None, devices=devices, verify_hashes=not skip_hash_check)
        finally:
            if export_zip_path is not None and out_dir is not None and any(out_dir.glob("*_eval_results.json")):
                names = export_zip(out_dir, export_zip_path.resolve())
                err_console.print(f"submission zip: {export_zip_path} ({len(names)} result files)")
    except DimensionsFailed as err:
        _print_summary(err.summary, label, out_dir)
        raise  # the message and exit code: bench's one handler (bench/console.py)
    except KeyboardInterrupt:
        raise Interrupted("interrupted; rerun the same command to resume (finished dimensions are kept)") from None
    _print_summary(summary, label, out_dir)


def _print_summary(summary: dict[str, float], label: str, out_dir: Path | None) -> None:
    if not summary:
        return
    table = Table(title=f"VBench — {label}", show_header=True)
    table.add_column("dimension")
    table.add_column("score", justify="right")
    for d, v in summary.items():
        table.add_row(d, f"{v:.4f}")
    out_console.print(table)
    out_console.print(f"results: {out_dir}")
