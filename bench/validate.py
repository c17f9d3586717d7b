"""Checks of user-given values that need no model: numbers finite and in range, devices.

Every verb calls these before it loads anything, so that `--guidance-scale nan` or
`lr=inf` is refused with a message naming the option instead of producing NaN videos or a
"non-finite loss" minutes later.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from bench.console import BenchError


class BadValue(BenchError, ValueError):
    """A user-given value that cannot be used (exit 2); a ValueError for callers that catch those."""


def number_problem(value: Any, lo: float | None = None, hi: float | None = None, *,
                   lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> str | None:
    """Why `value` is not an acceptable number, or None if it is.

    lo/hi: bounds (closed unless lo_open/hi_open); integer: whole numbers only.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be {'an integer' if integer else 'a number'}, got {type(value).__name__} {value!r}"
    if integer and not isinstance(value, int):
        return f"must be an integer, got {value!r}"
    if not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if lo is not None and (value <= lo if lo_open else value < lo):
        return f"must be {'>' if lo_open else '>='} {lo:g}, got {value:g}"
    if hi is not None and (value >= hi if hi_open else value > hi):
        return f"must be {'<' if hi_open else '<='} {hi:g}, got {value:g}"
    return None


def check_device(device: str | None, what: str = "--device") -> str | None:
    """`device` if torch can place tensors there on this machine; a ValueError naming it otherwise."""
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise BadValue(f"{what} {device!r}: not a device name (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadValue(f"{what} {device!r}: no CUDA device is available on this machine (use cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BadValue(f"{what} {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BadValue(f"{what} {device!r}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise BadValue(f"{what} {device!r}: unsupported device type (cpu, cuda, cuda:N, mps)")
    return device


def json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (JSON null).

    For values where NaN means "not measured" (e.g. the image reward of a variant that has
    none); everything else is written with allow_nan=False, so a NaN there is an error.
    """
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
