"""`bench score ...`: score a folder of generated videos with one benchmark.

This module owns the `score` sub-app; each benchmark's command lives in its own module
(`bench/score_vbench.py`, ...) and is attached here.
"""

from __future__ import annotations

import typer

from bench.score_tiny import tiny_command
from bench.score_vbench import vbench_command

score_app = typer.Typer(
    name="score",
    help="Score generated videos (writes scores/<label>-<benchmark>/).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

score_app.command("vbench")(vbench_command)
score_app.command("tiny")(tiny_command)


def register(app: typer.Typer) -> None:
    app.add_typer(score_app, name="score")
