"""Console output shared by the verbs, and the one place that turns errors into exit codes.

Every verb raises its own error classes (ConfigError, GenerateError, ...), all derived from
`bench.errors.BenchError`, which carries the exit status as `code`; none of them prints a
traceback or picks an exit status itself. `BenchGroup` (the root command of `bench`) catches
whatever a verb raises and `exit_code` maps it: a BenchError by its `code` (2 for bad input:
a value, a file, a folder the user gave; 1 for a run that failed), 130 for Ctrl-C, and the
few errors of other packages (the core library, builtins) by the table below. `bench --debug VERB`
(or BENCH_DEBUG=1) lets the exception through with its traceback.
"""

from __future__ import annotations

import os
from typing import Any

import typer.core

from bench.errors import INPUT_ERROR, INTERRUPTED, RUN_FAILED, BenchError

DEBUG_ENV = "BENCH_DEBUG"
DEBUG_META = "bench.debug"  # ctx.meta key set by the root `--debug` option

# Exit status of the errors that are not BenchErrors, by "module.Class" (matched along the
# class's MRO): the core library's (t2v_turbo_core never imports bench, so its errors cannot
# derive from BenchError) and a few of other packages'. Names, not imports: importing them
# to build the table would make `bench --help` slow.
EXIT_CODES: dict[str, int] = {
    "t2v_turbo_core.safe_io.WeightsFileError": INPUT_ERROR,
    "t2v_turbo_core.teachers.CheckpointMismatchError": INPUT_ERROR,
    "t2v_turbo_core.data.VideoDecodeError": INPUT_ERROR,
    # A cut weight file met inside diffusers/transformers loaders (bench's own loaders raise
    # WeightsFileError naming the file first).
    "safetensors._safetensors_rust.SafetensorError": INPUT_ERROR,
    # A file or folder the user named that is not there, not readable, or not text.
    "builtins.FileNotFoundError": INPUT_ERROR,
    "builtins.NotADirectoryError": INPUT_ERROR,
    "builtins.IsADirectoryError": INPUT_ERROR,
    "builtins.PermissionError": INPUT_ERROR,
    "builtins.UnicodeDecodeError": INPUT_ERROR,
}


def exit_code(err: BaseException) -> int | None:
    """The exit status for `err`, or None for an error no table entry knows (a bug)."""
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(err, BenchError):
        return err.code
    for cls in type(err).__mro__:
        found = EXIT_CODES.get(f"{cls.__module__}.{cls.__qualname__}")
        if found is not None:
            return found
    return None


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def print_error(console: Any, message: object) -> None:
    """`error: <message>` on a rich console, the message printed as text.

    escape: a "[...]" in a message (a path, an interval) is text, not rich markup;
    soft_wrap: long paths stay on one line, copy-pastable.
    """
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(str(message))}", soft_wrap=True, highlight=False)


def report_error(err: BaseException) -> int:
    """Print `err` as one clean message on stderr; returns the exit status."""
    from rich.console import Console

    console = Console(stderr=True)
    code = exit_code(err)
    if isinstance(err, KeyboardInterrupt):
        print_error(console, "interrupted; rerun the same command to resume (finished work is kept)")
    elif code is None:
        code = RUN_FAILED
        text = str(err) or type(err).__name__
        print_error(console, f"{type(err).__name__}: {text}")
        console.print(f"(an unexpected error; `bench --debug ...` or {DEBUG_ENV}=1 shows the traceback)",
                      soft_wrap=True, highlight=False, markup=False)
    else:
        print_error(console, str(err) or type(err).__name__)
        note = getattr(err, "note", None)
        if note:
            console.print(note, style="red", soft_wrap=True, highlight=False, markup=False)
    return code


def sub_app(name: str, help: str) -> "typer.Typer":
    """A verb with sub-commands (`bench score ...`, `bench zoo ...`): every one built the same way.

    Verbs register the same way too: each verb module has `register(app)`, which adds its
    command (or its sub-app) to the root app (bench/cli.py lists the modules)."""
    import typer

    return typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_show_locals=False)


def _own_exits() -> tuple[type[BaseException], ...]:
    """The exceptions click and typer handle themselves (usage errors print usage, exit 2).
    typer >= 0.22 parses with its own copy of click (`typer._click`), whose classes are not
    click's: both kinds, or a mistyped option would be reported as a bug."""
    import click

    classes: list[type[BaseException]] = [click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
                                          typer.Exit, typer.Abort]
    try:
        from typer._click import exceptions as vendored
    except ImportError:  # a typer that uses click itself
        pass
    else:
        classes.append(vendored.ClickException)  # its Exit and Abort are typer.Exit, typer.Abort
    return tuple(classes)


class BenchGroup(typer.core.TyperGroup):
    """The root command: runs the verb and maps whatever it raises to a message and status."""

    def invoke(self, ctx):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except _own_exits():
            raise  # click's and typer's own: usage errors (exit 2), typer.Exit(code) from a verb
        except (Exception, KeyboardInterrupt) as err:
            if debug_enabled() or ctx.meta.get(DEBUG_META):
                raise
            raise typer.Exit(report_error(err)) from None
