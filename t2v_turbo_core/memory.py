"""Memory figures: what autograd keeps for the reward step's backward (independent of the device),
this process's resident set size, and the bytes behind a module's tensors (storages shared between
modules, as the one-UNet student shares the teacher's, counted once)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

T = TypeVar("T")


def saved_tensor_bytes(fn: Callable[[], T]) -> tuple[int, T]:
    """Run `fn` and count the bytes of the tensors autograd keeps for backward meanwhile.

    This is the memory a graph holds until `backward()` (what backpropagating through a
    sampling chain multiplies), exact and the same on CPU and GPU, unlike allocator peaks.
    Returns (bytes, fn's result).
    """
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out



def rss_gib(field: str = "VmRSS") -> float:
    """This process's VmRSS (now) or VmHWM (peak since start or the last reset), GiB; NaN where
    /proc is not Linux's."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux's clear_refs 5), so a peak can be read per phase."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def storage_bytes(*modules: nn.Module) -> int:
    """Bytes of the distinct storages behind the modules' parameters and buffers (shared = once)."""
    seen: dict[int, int] = {}
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())
