"""Console output shared by the verbs, and the one place that turns errors into exit codes.

Every verb raises its own error classes (ConfigError, GenerateError, ...); none of them
prints a traceback or picks an exit status itself. `BenchGroup` (the root command of
`bench`) catches whatever a verb raises and `exit_code` maps it: 2 for bad input (a value, a
file, a folder the user gave), 1 for a run that failed, 130 for Ctrl-C. `bench --debug VERB`
(or BENCH_DEBUG=1) lets the exception through with its traceback.
"""

from __future__ import annotations

import os
from typing import Any

import typer.core

INPUT_ERROR = 2
RUN_FAILED = 1
INTERRUPTED = 130
DEBUG_ENV = "BENCH_DEBUG"
DEBUG_META = "bench.debug"  # ctx.meta key set by the root `--debug` option


class BenchError(Exception):
    """A user-facing error with its exit status (2: bad input unless said otherwise)."""

    def __init__(self, message: object, code: int = INPUT_ERROR):
        super().__init__(message)
        self.code = code

    def __reduce__(self):  # the code survives pickling (bench ablate's worker processes)
        return type(self), (str(self), self.code)


# Exit status of each error class, by "module.Class" (matched along the class's MRO, so a
# subclass inherits its base's entry). Names, not imports: importing every verb's module
# to build the table would make `bench --help` slow. A class with an integer `code`
# attribute (GenerateError, ScoreError, TrainingError, BenchError) carries its own status.
EXIT_CODES: dict[str, int] = {
    "bench.config.ConfigError": INPUT_ERROR,
    "bench.runs.RunError": INPUT_ERROR,  # not a run directory, unreadable run.json, no student
    "bench.weights.MissingWeightsError": INPUT_ERROR,
    "bench.components.ComponentLoadError": INPUT_ERROR,  # a weight file that does not fit its model
    "bench.tinyworld.zoo.ZooError": INPUT_ERROR,
    "bench.report.ReportInputError": INPUT_ERROR,
    "bench.video_io.VideoReadError": INPUT_ERROR,
    "t2v_turbo_core.safe_io.WeightsFileError": INPUT_ERROR,
    "t2v_turbo_core.teachers.CheckpointMismatchError": INPUT_ERROR,
    "t2v_turbo_core.data.VideoDecodeError": INPUT_ERROR,
    "bench.train.TrainingError": RUN_FAILED,
    "bench.ablate.AblationError": RUN_FAILED,
    "bench.tinyworld.build.StageError": RUN_FAILED,
    "bench.vbench_env.VBenchEnvError": RUN_FAILED,
    "bench._vbench_driver.DownloadBlocked": RUN_FAILED,
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
    code = getattr(err, "code", None)
    if isinstance(code, int) and not isinstance(code, bool) and isinstance(err, Exception) and not isinstance(err, OSError):
        return code
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
    return code


class BenchGroup(typer.core.TyperGroup):
    """The root command: runs the verb and maps whatever it raises to a message and status."""

    def invoke(self, ctx):  # type: ignore[override]
        import click

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, typer.Exit, typer.Abort):
            raise  # click's and typer's own: usage errors (exit 2), typer.Exit(code) from a verb
        except (Exception, KeyboardInterrupt) as err:
            if debug_enabled() or ctx.meta.get(DEBUG_META):
                raise
            raise typer.Exit(report_error(err)) from None
