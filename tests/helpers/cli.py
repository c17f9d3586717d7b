"""A `bench` app with only some verbs registered, behind bench's one error handler."""

from __future__ import annotations

import typer

from bench.console import BenchGroup


def verb_app(*modules) -> typer.Typer:
    """A root app with each module's verbs (`module.register(app)`), as `bench` itself runs them:
    errors become their message and exit code (bench/console.py)."""
    app = typer.Typer(cls=BenchGroup)
    for module in modules:
        module.register(app)

    @app.callback()
    def _root() -> None:  # keeps each verb a sub-command even with one registered
        pass

    return app
