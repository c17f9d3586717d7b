"""Measuring what the reward step costs in memory, independently of the device."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

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
