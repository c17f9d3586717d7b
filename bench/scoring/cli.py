"""`bench score ...`: score a folder of generated videos with one benchmark.

This module owns the `score` sub-app; each benchmark's command lives in its own module
(`bench/vbench/score/`, `bench/tinyworld/score/`), named in the benchmark registry
(`bench/scoring/registry.py`), and is attached here.
"""

from __future__ import annotations

import typer

from bench.console import sub_app
from bench.scoring.registry import BENCHMARKS

score_app = sub_app("score", "Score generated videos (writes scores/<label>-<benchmark>/).")

for _benchmark in BENCHMARKS.values():  # one sub-command per registered benchmark
    score_app.command(_benchmark.name)(_benchmark.load_command())


def register(app: typer.Typer) -> None:
    app.add_typer(score_app, name="score")
