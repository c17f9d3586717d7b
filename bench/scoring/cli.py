"""`bench score ...`: score a folder of generated videos with one benchmark.

This module owns the `score` sub-app; each benchmark's command lives in its own module
(`bench/score_vbench.py`, ...) and is attached here.
"""

from __future__ import annotations

import typer

from bench.console import sub_app
from bench.score_tiny import tiny_command
from bench.score_vbench import vbench_command

score_app = sub_app("score", "Score generated videos (writes scores/<label>-<benchmark>/).")

score_app.command("vbench")(vbench_command)
score_app.command("tiny")(tiny_command)


def register(app: typer.Typer) -> None:
    app.add_typer(score_app, name="score")
