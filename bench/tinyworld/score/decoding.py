"""Reading the videos: decoded frames at the tiny world's size, in batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from bench.tinyworld.score.suite import DECODE_STAGE, TinyScoreError


@dataclass
class Clip:
    """A decoded video: uint8 frames [F, H, W, 3] (RGB) and its fps."""

    frames: np.ndarray
    fps: float


class _Tracker:
    """Progress over named stages planned up front, in videos: a rich Progress gets one task
    per stage; a callable gets (done, total) over all stages (as `bench ablate` passes)."""

    def __init__(self, progress, plan: Mapping[str, int]):
        self.plan = {k: v for k, v in plan.items() if v > 0}
        self.total = sum(self.plan.values())
        self.done = 0
        self.tasks: dict[str, Any] = {}
        self.rich = progress is not None and hasattr(progress, "add_task")
        self.callback = progress if progress is not None and not self.rich and callable(progress) else None
        if self.rich:
            self.tasks = {k: progress.add_task(k, total=v) for k, v in self.plan.items()}
        self.progress = progress
        if self.callback is not None:
            self.callback(0, self.total)

    def advance(self, stage: str, n: int = 1) -> None:
        if self.rich and stage in self.tasks:
            self.progress.advance(self.tasks[stage], n)
        elif self.callback is not None:
            self.done += n
            self.callback(self.done, self.total)


def decode(paths: Iterable[Path], progress=None) -> dict[Path, Clip]:
    """Every video decoded once (bench.video_io.read_video: decord, PyAV fallback).
    `progress`: a rich Progress, a (done, total) callable, a _Tracker, or None."""
    from bench.video_io import VideoReadError, read_video

    paths = list(dict.fromkeys(paths))
    tracker = progress if isinstance(progress, _Tracker) else _Tracker(progress, {DECODE_STAGE: len(paths)})
    out: dict[Path, Clip] = {}
    for p in paths:
        try:
            frames, fps = read_video(p)
        except VideoReadError as err:
            raise TinyScoreError(str(err)) from None  # VideoReadError names the file
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
            raise TinyScoreError(f"{p}: expected at least 2 RGB frames, got an array of shape {frames.shape}")
        out[p] = Clip(np.ascontiguousarray(frames), fps)
        tracker.advance(DECODE_STAGE)
    return out


def middle_indices(num_frames: int, vlen: int) -> list[int]:
    """VBench's uniform "middle" frame sampling (vbench/utils.py get_frame_indices): the middle
    of each of `min(num_frames, vlen)` equal intervals, padded with the last index."""
    acc = min(num_frames, vlen)
    edges = np.linspace(0, vlen, acc + 1).astype(int)
    idx = [int((edges[i] + edges[i + 1] - 1) // 2) for i in range(acc)]
    return idx + [idx[-1]] * (num_frames - len(idx))


def _to_tensor(frames: np.ndarray) -> "torch.Tensor":
    """uint8 [F, H, W, 3] -> float [F, 3, SIZE, SIZE] in [0, 1] (the evaluators' input size)."""
    import torch
    import torch.nn.functional as F

    from bench.tinyworld.world import SIZE

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return x


def _clip_tensor(frames: np.ndarray) -> "torch.Tensor":
    """[FRAMES, 3, SIZE, SIZE]: the clip evaluators see 8 frames, sampled as VBench samples
    ViCLIP's 8 frames ("middle"); a tiny-world video already has exactly 8."""
    from bench.tinyworld.world import FRAMES

    idx = middle_indices(FRAMES, frames.shape[0]) if frames.shape[0] != FRAMES else list(range(FRAMES))
    return _to_tensor(frames[idx])


