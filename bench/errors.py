"""The one error base of `bench`: every user-facing error carries its exit status.

A verb raises a subclass of `BenchError`; none prints or picks an exit status itself. The
root command (`bench/console.py`) catches it, prints `error: <message>` (and the error's
`note`, if any) and exits with `code`. A subclass states its usual status as the class
attribute `code`; a raise site may pass another (`TrainingError("...", code=2)`).

This module imports nothing heavy, so every module can derive its errors from it.
"""

from __future__ import annotations

INPUT_ERROR = 2  # a value, file or folder the user gave cannot be used
RUN_FAILED = 1  # the work itself failed (non-finite loss, a job that crashed)
INTERRUPTED = 130  # Ctrl-C


def _rebuild(cls: type, args: tuple, state: dict) -> BaseException:
    # Rebuilt without calling the subclass's own __init__ (whose arguments differ per class).
    err = BaseException.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class BenchError(Exception):
    """A user-facing error with its exit status (`code`: 2, bad input, unless said otherwise)."""

    code: int = INPUT_ERROR
    note: str | None = None  # a second line printed after the message (e.g. "nothing was written.")

    def __init__(self, message: object = "", code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    def __reduce__(self):  # the code survives pickling (bench ablate's worker processes)
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class Interrupted(BenchError):
    """Ctrl-C, with the verb's word on what is kept (exit 130)."""

    code = INTERRUPTED
