"""Running `bench` in-process: the whole app, or one with only some verbs registered, behind
bench's one error handler."""

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


def invoke_bench(args: list[str]):
    """`bench ARGS` in-process with every verb registered, on a wide terminal (so that messages
    are not wrapped mid-word); returns click's Result."""
    from typer.testing import CliRunner

    from bench.cli import _register_verbs, app

    _register_verbs()
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})
