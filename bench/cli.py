"""The `bench` command line: one typer app, one module per verb.

A verb module exposes `register(app)`; only verbs that are built are listed here, so
`bench --help` never advertises something that does not run.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="bench",
    help="Train, generate, score and report T2V-Turbo ablations (VBench protocol).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Train, generate, score and report T2V-Turbo ablations (VBench protocol)."""
    # A root callback keeps `bench <verb>` a sub-command even while only one verb is built
    # (typer otherwise runs a single-command app as that command).


def _register_verbs() -> None:
    import importlib

    for module in VERB_MODULES:
        importlib.import_module(module).register(app)


# Verb modules, in the order the paper's pipeline runs them.
VERB_MODULES: list[str] = [
    "bench.zoo",
    "bench.train",
    "bench.generate",
    "bench.score",
    "bench.report",
    "bench.compare",
    "bench.humaneval",
    "bench.ablate",
    "bench.export",
]


def main() -> None:
    _register_verbs()
    app()
