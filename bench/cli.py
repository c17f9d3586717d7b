"""The `bench` command line: one typer app, one module per verb.

A verb module exposes `register(app)`; only verbs that are built are listed here, so
`bench --help` never advertises something that does not run.
"""

from __future__ import annotations

import os
import sys

import typer

from bench.console import DEBUG_ENV, DEBUG_META, BenchGroup

app = typer.Typer(
    name="bench",
    cls=BenchGroup,  # the one error handler of every verb (bench/console.py)
    help="Train, generate, score and report T2V-Turbo ablations (VBench protocol).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error instead of the one-line message."),
) -> None:
    """Train, generate, score and report T2V-Turbo ablations (VBench protocol)."""
    if debug:
        ctx.meta[DEBUG_META] = True
    # A root callback keeps `bench <verb>` a sub-command even while only one verb is built
    # (typer otherwise runs a single-command app as that command).


_registered: list[str] = []


def _register_verbs() -> None:
    """Attach every verb to `app` (once: tests and main() may both call this)."""
    import importlib

    for module in VERB_MODULES:
        if module not in _registered:
            importlib.import_module(module).register(app)
            _registered.append(module)


# Verb modules, in the order the paper's pipeline runs them.
VERB_MODULES: list[str] = [
    "bench.tinyworld.cli",
    "bench.preprocess",
    "bench.train",
    "bench.generate",
    "bench.scoring.cli",
    "bench.report",
    "bench.report.compare",
    "bench.humaneval",
    "bench.ablate",
    "bench.export",
    "bench.ls",
]


def main() -> None:
    _register_verbs()
    # `--debug` anywhere on the line (not only before the verb) turns on tracebacks.
    if "--debug" in sys.argv[1:]:
        os.environ[DEBUG_ENV] = "1"
        sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != "--debug")]
    app()
