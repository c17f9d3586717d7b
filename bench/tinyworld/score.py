"""`bench score tiny`: the tiny world's benchmark, VBench's 16 dimensions on tiny-world videos.

Each dimension measures in the tiny world what VBench's measures, with the tiny world's own
evaluators (bench/tinyworld/models.py, trained by `bench zoo build`) in the role of VBench's
pretrained ones, and VBench's own formulas wherever a formula is not a network
(Vchitect/VBench `vbench/<dimension>.py`, cited per function below). Per-video values are in
[0, 1], 1 best; a dimension's aggregate is the mean of its per-video values.

Which prompt serves which dimension comes from the tiny suite (bench/tinyworld/suite.py), or
from a `suite_info.json` in the videos folder when there is one (same fields as the suite's
entries). Videos are matched back to prompts by VBench's file naming `{prompt}-{index}.mp4`.

Output folder (default `RUN/scores/<label>-tiny/`), in VBench's formats so that `bench report`
reads official and tiny results alike:
  {dimension}_eval_results.json  {dimension: [aggregate, [{"video_path", "video_results", ...}]]}
  {dimension}_full_info.json     the prompts and videos scored for the dimension
  summary.json                   {dimension: aggregate} for every finished dimension
  bench_scoring.json             {"benchmark": "tiny", videos, dimensions, zoo, times, ...}
Every file is written atomically; a dimension whose result file is complete is skipped on
rerun (`--force` redoes it).

Library functions never print. Heavy imports (torch, OpenCV) are local so that
`bench --help` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import typer

from bench.errors import INPUT_ERROR, Interrupted
from bench.scoring import results
from bench.scoring.results import ScoreError, read_complete_result, resolve_videos, result_path, write_result_json
from bench.tinyworld.suite import DIMENSIONS, TinyPrompt, tiny_suite

if TYPE_CHECKING:
    import torch

BENCHMARK = "tiny"
SUITE_INFO_NAME = "suite_info.json"
SCORING_NAME = "bench_scoring.json"
SUMMARY_NAME = "summary.json"
VIDEO_SUFFIX = ".mp4"
PARTIAL_SUFFIX = ".partial.mp4"  # bench.video_io.TMP_SUFFIX: a video still being written

# Which evaluator pass each dimension needs (VBench's evaluator -> the tiny world's).
FRAME_PROBE_DIMENSIONS = frozenset({
    "subject_consistency", "background_consistency", "object_class", "multiple_objects", "color",
    "spatial_relationship", "scene", "appearance_style",
})
QUALITY_NET_DIMENSIONS = frozenset({"aesthetic_quality", "imaging_quality"})
CLIP_PROBE_DIMENSIONS = frozenset({"human_action", "temporal_style"})
VIDEO_TEXT_DIMENSIONS = frozenset({"overall_consistency"})
FLOW_DIMENSIONS = frozenset({"motion_smoothness", "dynamic_degree"})
PIXEL_DIMENSIONS = FLOW_DIMENSIONS | {"temporal_flickering"}  # no network needed
PROBE_KEYS = ("presence", "color", "position", "scene", "style", "object_features", "scene_features")
# Progress stages, in the order they run.
DECODE_STAGE, FRAME_PROBE_STAGE, QUALITY_STAGE = "decode videos", "frame probe", "quality net"
CLIP_PROBE_STAGE, VIDEO_TEXT_STAGE, FLOW_STAGE = "clip probe", "video-text model", "optical flow"

# A shape counts as detected in a frame when its presence probability exceeds this
# (GRiT's detections play this role in VBench's object_class / multiple_objects / color).
PRESENCE_THRESHOLD = 0.5

# The frame probe predicts object centres, not boxes. For VBench's IoU term in
# get_position_score the objects get square boxes of the world's nominal size in two-object
# clips: world.sample_pair draws radii in [0.26, 0.32] screen units (half-width 0.29).
PAIR_BOX_HALF = 0.29
# vbench/spatial_relationship.py get_position_score: boxes overlapping by IoU >= 0.1 score
# iou_threshold / iou instead of 1.
SPATIAL_IOU_THRESHOLD = 0.1

# Optical flow (the tiny world's RAFT and AMT): OpenCV's Farneback on grayscale frames.
# Farneback's pyramid needs some room: frames are upscaled (bicubic) until the short side is
# at least FLOW_MIN_SIDE pixels and the flow is scaled back, so that flow is in pixels of the
# video as VBench's is. The window (9 px at the upscaled size, 4.5 px of a 32 px frame)
# resolves the spinning of a small star, which the default 15 px window averages away.
FLOW_MIN_SIDE = 64
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

# Frames per forward pass of the per-frame evaluators, clips per pass of the clip evaluators.
FRAME_BATCH = 512
CLIP_BATCH = 64


class TinyScoreError(ScoreError):
    """A user-facing failure of `bench score tiny` (message + exit code)."""


# =========================================================================== the suite


@dataclass(frozen=True)
class TinyVideo:
    """One video of the folder, matched back to the suite prompt it was generated for."""

    path: Path
    entry: TinyPrompt
    index: int

    @property
    def prompt(self) -> str:
        return self.entry.prompt


@dataclass(frozen=True)
class SuiteSource:
    entries: tuple[TinyPrompt, ...]
    # prompt -> explicit video file names (suite_info.json "video_list"), else matched by name.
    video_lists: Mapping[str, tuple[str, ...]]
    record: Mapping[str, Any]  # what bench_scoring.json says about the suite


def _require_aux(entry: TinyPrompt, dimension: str) -> None:
    """The ground truth a dimension needs from a prompt's auxiliary_info (clear errors)."""
    from bench.tinyworld.world import ACTIONS, CAMERAS, COLORS, RELATIONS, SCENES, SHAPES, STYLES

    aux = entry.auxiliary_info
    objs = aux.get("objects") or []

    def bad(what: str) -> TinyScoreError:
        return TinyScoreError(f"suite prompt {entry.prompt!r} serves {dimension} but {what}")

    for o in objs:
        if not isinstance(o, dict) or o.get("shape") not in SHAPES:
            raise bad(f"names an unknown object {o!r} (shapes: {', '.join(SHAPES)})")
        if o.get("color") is not None and o["color"] not in COLORS:
            raise bad(f"names an unknown colour {o['color']!r} (colours: {', '.join(COLORS)})")
    if dimension in ("object_class", "color") and len(objs) < 1:
        raise bad("its auxiliary_info has no objects")
    if dimension == "color" and objs[0].get("color") is None:
        raise bad("its first object has no colour")
    if dimension in ("multiple_objects", "spatial_relationship"):
        if len(objs) != 2:
            raise bad("its auxiliary_info does not have exactly two objects")
        if objs[0]["shape"] == objs[1]["shape"]:
            raise bad("its two objects have the same shape (the frame probe cannot tell them apart)")
    if dimension == "spatial_relationship" and aux.get("relation") not in RELATIONS:
        raise bad(f"its relation {aux.get('relation')!r} is not one of {', '.join(RELATIONS)}")
    if dimension == "human_action" and aux.get("action") not in ACTIONS:
        raise bad(f"its action {aux.get('action')!r} is not one of {', '.join(ACTIONS)}")
    if dimension == "scene" and aux.get("scene") not in SCENES:
        raise bad(f"its scene {aux.get('scene')!r} is not one of {', '.join(SCENES)}")
    if dimension == "appearance_style" and aux.get("style") not in STYLES:
        raise bad(f"its style {aux.get('style')!r} is not one of {', '.join(STYLES)}")
    if dimension == "temporal_style" and aux.get("camera") not in CAMERAS:
        raise bad(f"its camera {aux.get('camera')!r} is not one of {', '.join(CAMERAS)}")


def load_suite(videos_dir: Path) -> SuiteSource:
    """The prompts of the folder: its `suite_info.json` if present, else the tiny suite.

    suite_info.json is either what `bench generate` writes (an object whose "prompts" maps each
    prompt to its "dimensions" and "auxiliary_info"), or a list of entries with the tiny suite's
    fields: "prompt" (or VBench's "prompt_en"), "dimensions" (or VBench's "dimension"),
    "auxiliary_info", and optionally "video_list" (file names in the folder; without it videos
    are matched by name).
    """
    path = Path(videos_dir) / SUITE_INFO_NAME
    if not path.is_file():
        return SuiteSource(tuple(tiny_suite()), {}, {"source": "bench.tinyworld.suite", "prompts": len(tiny_suite())})
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TinyScoreError(f"{path}: unreadable ({err})") from None
    if isinstance(raw, dict) and isinstance(raw.get("prompts"), dict):
        # `bench generate`'s layout: {"prompts": {prompt: {"dimensions", "auxiliary_info", ...}}}
        raw = [{"prompt": p, **(v if isinstance(v, dict) else {})} for p, v in raw["prompts"].items()]
    if not isinstance(raw, list) or not raw:
        raise TinyScoreError(f"{path}: expected `bench generate`'s suite_info or a non-empty JSON list of prompt entries")
    entries, lists, seen = [], {}, set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise TinyScoreError(f"{path}: entry {i} is not an object")
        prompt = item.get("prompt", item.get("prompt_en"))
        dims = item.get("dimensions", item.get("dimension"))
        aux = item.get("auxiliary_info") or {}
        if not isinstance(prompt, str) or not prompt:
            raise TinyScoreError(f"{path}: entry {i} has no \"prompt\"")
        if prompt in seen:
            raise TinyScoreError(f"{path}: prompt {prompt!r} appears twice")
        seen.add(prompt)
        if isinstance(dims, str):
            dims = [dims]
        if not isinstance(dims, list) or not dims:
            raise TinyScoreError(f"{path}: entry {prompt!r} has no \"dimensions\" list")
        unknown = [d for d in dims if d not in DIMENSIONS]
        if unknown:
            raise TinyScoreError(f"{path}: entry {prompt!r}: unknown dimension(s) {', '.join(map(str, unknown))}")
        if not isinstance(aux, dict):
            raise TinyScoreError(f"{path}: entry {prompt!r}: \"auxiliary_info\" must be an object")
        entries.append(TinyPrompt(prompt, tuple(dims), aux))
        if "video_list" in item:
            vl = item["video_list"]
            vl = [vl] if isinstance(vl, str) else vl
            if not isinstance(vl, list) or not all(isinstance(v, str) for v in vl):
                raise TinyScoreError(f"{path}: entry {prompt!r}: \"video_list\" must be a list of file names")
            lists[prompt] = tuple(vl)
    record = {"source": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "prompts": len(entries)}
    return SuiteSource(tuple(entries), lists, record)


_NAME = re.compile(r"^(?P<prompt>.+)-(?P<index>\d+)\.mp4$")


def _index_of(name: str, fallback: int) -> int:
    m = _NAME.match(name)
    return int(m.group("index")) if m else fallback


def _shorten(names: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return shown + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def match_videos(videos_dir: Path, dimensions: Sequence[str], suite: SuiteSource | None = None) -> dict[str, list[TinyVideo]]:
    """{dimension: videos serving it}, every prompt of every dimension complete.

    Videos are `{prompt}-{index}.mp4` as VBench's standard mode names them. Every prompt of
    a dimension must have the indices found for any prompt of that dimension (e.g. 0..4); a
    prompt lacking one is an error listing what is missing, never a silently smaller sample.
    """
    videos_dir = Path(videos_dir)
    suite = suite or load_suite(videos_dir)
    by_prompt: dict[str, dict[int, Path]] = {}
    names = sorted(p.name for p in videos_dir.iterdir() if p.is_file())
    for name in names:
        if name.endswith(PARTIAL_SUFFIX):
            continue
        m = _NAME.match(name)
        if m:
            by_prompt.setdefault(m.group("prompt"), {})[int(m.group("index"))] = videos_dir / name
    suite_prompts = {e.prompt for e in suite.entries}
    anywhere = sorted({i for p, found in by_prompt.items() if p in suite_prompts for i in found})

    result: dict[str, list[TinyVideo]] = {}
    missing: dict[str, list[str]] = {}
    expected_by_dim: dict[str, list[int]] = {}
    for d in dimensions:
        entries = [e for e in suite.entries if d in e.dimensions]
        if not entries:
            raise TinyScoreError(f"the suite ({suite.record['source']}) has no prompt for {d}")
        # Per dimension, so that a dimension sampled more often (VBench oversamples
        # temporal_flickering) does not make the others look incomplete.
        expected = sorted({i for e in entries for i in by_prompt.get(e.prompt, {})}) or anywhere[:1] or [0]
        expected_by_dim[d] = expected
        vids: list[TinyVideo] = []
        for e in entries:
            _require_aux(e, d)
            if e.prompt in suite.video_lists:
                for k, name in enumerate(suite.video_lists[e.prompt]):
                    p = Path(name) if Path(name).is_absolute() else videos_dir / name
                    if p.is_file():
                        vids.append(TinyVideo(p, e, _index_of(p.name, k)))
                    else:
                        missing.setdefault(d, []).append(str(name))
                if not suite.video_lists[e.prompt]:
                    missing.setdefault(d, []).append(f"{e.prompt}-0{VIDEO_SUFFIX}")
                continue
            found = by_prompt.get(e.prompt, {})
            for i in expected:
                if i in found:
                    vids.append(TinyVideo(found[i], e, i))
                else:
                    missing.setdefault(d, []).append(f"{e.prompt}-{i}{VIDEO_SUFFIX}")
        result[d] = vids
    if missing and not anywhere and not suite.video_lists:
        raise TinyScoreError(
            f"no videos of the tiny suite in {videos_dir}: expected {{prompt}}-{{index}}.mp4 for the "
            f"prompts of {suite.record['source']}, e.g. {tiny_example(suite)!r}"
        )
    if missing:
        lines = [f"  {d}: {len(m)} missing (every prompt needs indices {_span(expected_by_dim[d])}), e.g. {_shorten(m)}"
                 for d, m in missing.items()]
        raise TinyScoreError(f"videos missing in {videos_dir}:\n" + "\n".join(lines))
    return result


def _span(indices: Sequence[int]) -> str:
    if list(indices) == list(range(indices[0], indices[-1] + 1)):
        return f"{indices[0]}..{indices[-1]}" if len(indices) > 1 else str(indices[0])
    return ", ".join(map(str, indices))


def tiny_example(suite: SuiteSource) -> str:
    return f"{suite.entries[0].prompt}-0{VIDEO_SUFFIX}"


# =========================================================================== decoding


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


# =========================================================================== formulas


def consistency_score(features: "torch.Tensor | np.ndarray") -> float:
    """vbench/subject_consistency.py (and background_consistency.py): for every frame i >= 1,
    (max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0))) / 2, averaged over the F - 1 frames."""
    import torch
    import torch.nn.functional as F

    f = F.normalize(torch.as_tensor(features, dtype=torch.float32), dim=-1)
    # max(0, .) as VBench; the upper clamp only removes float rounding above 1.
    prev = (f[1:] * f[:-1]).sum(-1).clamp(0, 1)
    first = (f[1:] * f[:1]).sum(-1).clamp(0, 1)
    return float(((prev + first) / 2).mean())


def temporal_flickering_score(frames: np.ndarray) -> float:
    """vbench/temporal_flickering.py cal_score: the mean absolute difference of consecutive
    frames (float32 of the uint8 pixels, all channels), averaged over pairs; (255 - mae) / 255."""
    x = frames.astype(np.float32)
    mae = np.abs(x[1:] - x[:-1]).reshape(x.shape[0] - 1, -1).mean(axis=1)
    return float((255.0 - mae.mean()) / 255.0)


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def optical_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flow [H, W, 2] (x, y) in pixels from RGB frame a to b: a(p) ~ b(p + flow(p))."""
    import cv2

    h, w = a.shape[:2]
    up = max(1, math.ceil(FLOW_MIN_SIDE / min(h, w)))
    ga, gb = _gray(a), _gray(b)
    if up > 1:
        ga = cv2.resize(ga, (w * up, h * up), interpolation=cv2.INTER_CUBIC)
        gb = cv2.resize(gb, (w * up, h * up), interpolation=cv2.INTER_CUBIC)
    flow = cv2.calcOpticalFlowFarneback(ga, gb, None, **FARNEBACK)
    if up > 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / up
    return flow


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: out(p) = img(p + flow(p)), bilinear, borders replicated."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def interpolate_midframe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The frame halfway between a and b (the tiny world's AMT): Farneback flow both ways,
    the intermediate flows of Super SloMo's linear-motion approximation at t = 1/2
    (F_t->a = -F_ab / 4 + F_ba / 4, F_t->b = -F_t->a), both frames warped there and averaged;
    rounded to uint8 as AMT's output image is."""
    f_ab, f_ba = optical_flow(a, b), optical_flow(b, a)
    f_ta = -0.25 * f_ab + 0.25 * f_ba
    mid = 0.5 * _warp(a.astype(np.float32), f_ta) + 0.5 * _warp(b.astype(np.float32), -f_ta)
    return np.clip(np.round(mid), 0, 255).astype(np.uint8)


def motion_smoothness_score(frames: np.ndarray) -> float:
    """vbench/motion_smoothness.py: the even frames (0, 2, 4, ...) are kept, the frame between
    each two consecutive ones interpolated, and compared with the real odd frames (1, 3, ...;
    an odd last frame with no even successor is not scored): the mean absolute uint8
    difference, averaged over the interpolated frames; (255 - diff) / 255."""
    even = frames[0::2]
    if len(even) < 2:
        raise ValueError("motion smoothness needs at least 3 frames")
    diffs = []
    for i in range(len(even) - 1):
        mid = interpolate_midframe(even[i], even[i + 1])
        diffs.append(np.abs(mid.astype(np.int16) - frames[2 * i + 1].astype(np.int16)).mean())
    return float((255.0 - np.mean(diffs)) / 255.0)


def dynamic_degree_details(frames: np.ndarray, fps: float) -> dict[str, Any]:
    """vbench/dynamic_degree.py: frames subsampled to about 8 fps (interval round(fps / 8),
    at least 1); for each consecutive pair of those, the mean of the top 5% (int(h * w * 0.05)
    pixels) optical-flow magnitudes; thres = 6.0 * min(H, W) / 256, count_num =
    round(4 * n_frames / 16) with n_frames the subsampled count (Python's round); walking the
    pairs in order, the video is dynamic as soon as the number of pairs strictly above thres
    reaches count_num (a video with no pairs is not dynamic, as VBench's loop is never entered)."""
    interval = max(1, round(fps / 8)) if fps and fps > 0 else 1
    sub = frames[::interval]
    h, w = sub.shape[1:3]
    thres = 6.0 * min(h, w) / 256.0
    count_num = round(4 * (len(sub) / 16.0))
    cut = int(h * w * 0.05)
    scores = []
    for a, b in zip(sub[:-1], sub[1:]):
        rad = np.sqrt((optical_flow(a, b) ** 2).sum(-1)).ravel()
        scores.append(float(np.sort(rad)[::-1][:cut].mean()) if cut > 0 else 0.0)
    count, dynamic = 0, False
    for s in scores:
        if s > thres:
            count += 1
        if count >= count_num:
            dynamic = True
            break
    return {"dynamic": dynamic, "pair_scores": scores, "thres": thres, "count_num": count_num}


def position_score(relation: str, a: Sequence[float], b: Sequence[float], half: float = PAIR_BOX_HALF,
                   iou_threshold: float = SPATIAL_IOU_THRESHOLD) -> float:
    """vbench/spatial_relationship.py get_position_score, on centres.

    `a` is the first named object's centre, `b` the second's, in screen units (x right,
    y down). As in VBench: a horizontal relation needs |dx| > |dy|, a vertical one
    |dy| > |dx|; then the score is 1 if the boxes' IoU is below 0.1, else 0.1 / IoU; 0 if
    the dominant axis is wrong. Boxes are squares of half-width `half` around the centres
    (the probe predicts no extent). Unlike VBench, whose rule only checks the axis ("left of"
    and "right of" score the same), the direction must also match the prompt: the probe
    knows which centre is which object, so the tiny world can check what the prompt says.
    """
    dx, dy = float(b[0]) - float(a[0]), float(b[1]) - float(a[1])
    side = 2 * half
    ox, oy = max(0.0, side - abs(dx)), max(0.0, side - abs(dy))
    inter = ox * oy
    iou = inter / (2 * side * side - inter)
    if relation in ("left of", "right of"):
        axis_ok = abs(dx) > abs(dy)
        direction_ok = dx > 0 if relation == "left of" else dx < 0
    elif relation in ("above", "below"):
        axis_ok = abs(dy) > abs(dx)
        direction_ok = dy > 0 if relation == "above" else dy < 0
    else:
        raise ValueError(f"unknown relation {relation!r}")
    if not (axis_ok and direction_ok):
        return 0.0
    return 1.0 if iou < iou_threshold else iou_threshold / iou


# =========================================================================== evaluation


def _chunks(paths: Sequence[Path], sizes: Sequence[int], budget: int) -> Iterable[list[int]]:
    """Indices of consecutive videos whose sizes add up to at most `budget` (at least one)."""
    chunk: list[int] = []
    used = 0
    for i, n in enumerate(sizes):
        if chunk and used + n > budget:
            yield chunk
            chunk, used = [], 0
        chunk.append(i)
        used += n
    if chunk:
        yield chunk


def _frame_pass(fn, clips: Mapping[Path, Clip], paths: Sequence[Path], stage: str, tracker: _Tracker):
    """{path: {key: [F, ...]}}: every frame of the videos through `fn`, FRAME_BATCH at a time."""
    import torch

    sizes = [clips[p].frames.shape[0] for p in paths]
    res: dict[Path, dict[str, torch.Tensor]] = {}
    with torch.inference_mode():
        for idx in _chunks(paths, sizes, FRAME_BATCH):
            out = fn(torch.cat([_to_tensor(clips[paths[i]].frames) for i in idx]))
            start = 0
            for i in idx:
                res[paths[i]] = {k: v[start : start + sizes[i]].float() for k, v in out.items()}
                start += sizes[i]
            tracker.advance(stage, len(idx))
    return res


def _clip_pass(fn, clips: Mapping[Path, Clip], paths: Sequence[Path], stage: str, tracker: _Tracker):
    """{path: {key: [1, ...]}}: each video as one 8-frame clip through `fn`, CLIP_BATCH at a time."""
    import torch

    res: dict[Path, dict[str, torch.Tensor]] = {}
    with torch.inference_mode():
        for idx in _chunks(paths, [1] * len(paths), CLIP_BATCH):
            out = fn(torch.stack([_clip_tensor(clips[paths[i]].frames) for i in idx]))
            for j, i in enumerate(idx):
                res[paths[i]] = {k: v[j : j + 1].float() for k, v in out.items()}
            tracker.advance(stage, len(idx))
    return res


def _frame_fraction(hits: np.ndarray) -> dict[str, Any]:
    """VBench's per-video record for frame-counting dimensions (object_class.py, scene.py)."""
    n = int(hits.shape[0])
    k = int(hits.sum())
    return {"video_results": k / n, "success_frame_count": k, "frame_count": n}


def tiny_per_video(
    videos_dir: str | os.PathLike[str],
    dimensions: Sequence[str] | None = None,
    evaluators: Mapping[str, Any] | None = None,
    progress=None,
    *,
    zoo: str | os.PathLike[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Per-video values: {dimension: [{"video_path", "video_results", "prompt", "index", ...}]}.

    The records are the per-video lists of the result files (VBench's fields, plus the
    prompt and index, for bootstrapping over prompts). As in VBench's color.py, a color video
    in which the object is never detected has no record (it counts neither way).
    `evaluators`: `bench.tinyworld.zoo.load_tiny_evaluators(...)` (loaded from `zoo` if None).
    `progress`: a rich Progress (one task per stage), a callable taking (done, total)
    counted in videos over all stages, or None.
    """
    dims = resolve_dimensions(dimensions)
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise TinyScoreError(f"videos folder not found: {videos_dir}")
    matched = match_videos(videos_dir, dims)
    return _evaluate(matched, evaluators, progress, zoo)


def _evaluate(matched: Mapping[str, list[TinyVideo]], evaluators, progress, zoo) -> dict[str, list[dict[str, Any]]]:
    import torch
    import torch.nn.functional as F

    from bench.tinyworld.world import ACTIONS, CAMERAS, COLORS, SCENES, SHAPES, STYLES

    dims = list(matched)
    if evaluators is None and any(d not in PIXEL_DIMENSIONS for d in dims):
        evaluators = load_evaluators(zoo)

    def paths_for(group: frozenset[str]) -> list[Path]:
        return list(dict.fromkeys(v.path for d in dims if d in group for v in matched[d]))

    groups = {FRAME_PROBE_STAGE: FRAME_PROBE_DIMENSIONS, QUALITY_STAGE: QUALITY_NET_DIMENSIONS,
              CLIP_PROBE_STAGE: CLIP_PROBE_DIMENSIONS, VIDEO_TEXT_STAGE: VIDEO_TEXT_DIMENSIONS,
              FLOW_STAGE: FLOW_DIMENSIONS}
    todo = {stage: paths_for(g) for stage, g in groups.items()}
    every = paths_for(frozenset(dims))
    plan = {DECODE_STAGE: len(every), **{k: len(v) for k, v in todo.items()}}
    # Flow is computed per dimension (motion smoothness and dynamic degree share videos).
    plan[FLOW_STAGE] = sum(len(matched[d]) for d in dims if d in FLOW_DIMENSIONS)
    tracker = _Tracker(progress, plan)
    clips = decode(every, tracker)

    probe = _frame_pass(lambda x: {k: v for k, v in evaluators["probe"](x).items() if k in PROBE_KEYS},
                        clips, todo[FRAME_PROBE_STAGE], FRAME_PROBE_STAGE, tracker)
    quality = _frame_pass(evaluators["quality"], clips, todo[QUALITY_STAGE], QUALITY_STAGE, tracker) if todo[QUALITY_STAGE] else {}
    clip_out = _clip_pass(evaluators["clip"], clips, todo[CLIP_PROBE_STAGE], CLIP_PROBE_STAGE, tracker) if todo[CLIP_PROBE_STAGE] else {}
    vt_out: dict[Path, dict[str, torch.Tensor]] = {}
    if todo[VIDEO_TEXT_STAGE]:
        vt = evaluators["vt"]
        vt_out = _clip_pass(lambda x: {"embedding": vt.encode_video(x)}, clips, todo[VIDEO_TEXT_STAGE], VIDEO_TEXT_STAGE, tracker)
        prompts = list(dict.fromkeys(v.prompt for v in matched["overall_consistency"]))
        with torch.inference_mode():
            text = dict(zip(prompts, vt.encode_text(prompts).float()))

    results: dict[str, list[dict[str, Any]]] = {}
    for d in dims:
        rows: list[dict[str, Any]] = []
        for v in matched[d]:
            aux = v.entry.auxiliary_info
            objs = aux.get("objects") or []
            clip = clips[v.path]
            rec: dict[str, Any]
            if d == "subject_consistency":
                rec = {"video_results": consistency_score(probe[v.path]["object_features"])}
            elif d == "background_consistency":
                rec = {"video_results": consistency_score(probe[v.path]["scene_features"])}
            elif d == "temporal_flickering":
                rec = {"video_results": temporal_flickering_score(clip.frames)}
            elif d == "motion_smoothness":
                if clip.frames.shape[0] < 3:
                    raise TinyScoreError(f"{v.path}: motion_smoothness needs at least 3 frames, it has {clip.frames.shape[0]}")
                rec = {"video_results": motion_smoothness_score(clip.frames)}
            elif d == "dynamic_degree":
                det = dynamic_degree_details(clip.frames, clip.fps)
                # VBench stores True/False; a number keeps every per-video value in [0, 1].
                rec = {"video_results": 1.0 if det["dynamic"] else 0.0,
                       "pair_scores": [round(s, 4) for s in det["pair_scores"]], "thres": det["thres"]}
            elif d in ("aesthetic_quality", "imaging_quality"):
                key = "aesthetic" if d == "aesthetic_quality" else "imaging"
                rec = {"video_results": float(quality[v.path][key].mean())}
            elif d == "object_class":
                present = torch.sigmoid(probe[v.path]["presence"]) > PRESENCE_THRESHOLD
                rec = _frame_fraction(present[:, SHAPES.index(objs[0]["shape"])].numpy())
            elif d == "multiple_objects":
                present = torch.sigmoid(probe[v.path]["presence"]) > PRESENCE_THRESHOLD
                ia, ib = (SHAPES.index(o["shape"]) for o in objs)
                rec = _frame_fraction((present[:, ia] & present[:, ib]).numpy())
            elif d == "color":
                k = SHAPES.index(objs[0]["shape"])
                detected = (torch.sigmoid(probe[v.path]["presence"][:, k]) > PRESENCE_THRESHOLD).numpy()
                if not detected.any():
                    continue  # vbench/color.py: only videos where the object is detected count
                right = (probe[v.path]["color"][:, k].argmax(-1) == COLORS.index(objs[0]["color"])).numpy()
                rate = float(right[detected].mean())
                rec = {"video_results": rate, "cur_success_frame_rate": rate,
                       "object_frames": int(detected.sum()), "frame_count": int(detected.shape[0])}
            elif d == "spatial_relationship":
                out = probe[v.path]
                present = torch.sigmoid(out["presence"]) > PRESENCE_THRESHOLD
                ia, ib = (SHAPES.index(o["shape"]) for o in objs)
                frame_scores = [
                    position_score(aux["relation"], out["position"][t, ia].tolist(), out["position"][t, ib].tolist())
                    if bool(present[t, ia] and present[t, ib]) else 0.0
                    for t in range(out["position"].shape[0])
                ]
                rec = {"video_results": float(np.mean(frame_scores)), "frame_results": frame_scores}
            elif d == "scene":
                hits = (probe[v.path]["scene"].argmax(-1) == SCENES.index(aux["scene"])).numpy()
                rec = _frame_fraction(hits)
            elif d == "appearance_style":
                hits = (probe[v.path]["style"].argmax(-1) == STYLES.index(aux["style"])).numpy()
                rec = _frame_fraction(hits)
                rec["frame_results"] = [float(h) for h in hits]
            elif d == "human_action":
                pred = int(clip_out[v.path]["action"][0].argmax())
                rec = {"video_results": 1.0 if pred == ACTIONS.index(aux["action"]) else 0.0, "predicted": ACTIONS[pred]}
            elif d == "temporal_style":
                pred = int(clip_out[v.path]["camera"][0].argmax())
                rec = {"video_results": 1.0 if pred == CAMERAS.index(aux["camera"]) else 0.0, "predicted": CAMERAS[pred]}
            elif d == "overall_consistency":
                cos = float(F.cosine_similarity(vt_out[v.path]["embedding"][0], text[v.prompt], dim=0))
                rec = {"video_results": min(1.0, max(0.0, cos)), "cosine": cos}
            else:  # pragma: no cover - resolve_dimensions rejects unknown names
                raise TinyScoreError(f"unknown dimension {d}")
            if d in FLOW_DIMENSIONS:
                tracker.advance(FLOW_STAGE)
            rows.append({"video_path": str(v.path), **rec, "prompt": v.prompt, "index": v.index})
        results[d] = rows
    return results


def aggregate(rows: Sequence[Mapping[str, Any]]) -> float:
    """The mean of per-video values. VBench pools frames (or frame pairs) over all videos for
    the frame-counting and consistency dimensions; with videos of equal length, as every
    generator's are, that is the same number. No rows (every color video without a detected
    object; VBench would divide by zero) gives 0.0."""
    return float(np.mean([r["video_results"] for r in rows])) if rows else 0.0


def load_evaluators(zoo: str | os.PathLike[str] | None = None) -> dict:
    from bench.tinyworld.zoo import ZooError, load_tiny_evaluators

    from t2v_turbo_core.safe_io import WeightsFileError

    try:
        return load_tiny_evaluators(zoo)
    except (ZooError, WeightsFileError) as err:  # missing, truncated or mismatched zoo files
        raise TinyScoreError(str(err)) from None


def resolve_dimensions(dimensions: Sequence[str] | None) -> list[str]:
    if not dimensions:
        return list(DIMENSIONS)
    unknown = [d for d in dimensions if d not in DIMENSIONS]
    if unknown:
        raise TinyScoreError(f"unknown dimension(s): {', '.join(unknown)}\nknown: {', '.join(DIMENSIONS)}")
    return list(dict.fromkeys(dimensions))


# =========================================================================== results


_atomic_write_json = write_result_json  # (a name tests patch to interrupt a write)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def zoo_record(zoo: str | os.PathLike[str] | None, evaluators_given: bool) -> dict[str, Any]:
    """Which evaluators scored: the zoo manifest's hash and the eval_* stages' steps."""
    from bench.tinyworld.zoo import zoo_dir

    if evaluators_given and zoo is None:
        return {"dir": None, "note": "evaluators passed in by the caller; zoo not recorded"}
    d = zoo_dir(zoo)
    manifest = d / "zoo.json"
    if not manifest.is_file():
        return {"dir": str(d), "manifest_sha256": None}
    data = json.loads(manifest.read_text())
    stages = data.get("stages", {})
    return {
        "dir": str(d),
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "random": bool(data.get("random", False)),
        "steps": {k: stages[k].get("steps") for k in ("eval_probe", "eval_clip", "eval_quality", "eval_vt") if k in stages},
    }


def _versions() -> dict[str, str]:
    from bench.runs import package_versions  # the one provenance collector

    return package_versions(("torch", "opencv-python-headless", "numpy", "decord", "av"), with_self=False)


def write_summary(out_dir: Path) -> dict[str, float]:
    summary = {}
    for d in DIMENSIONS:
        value = read_complete_result(result_path(out_dir, d), d)
        if value is not None:
            summary[d] = value
    _atomic_write_json(Path(out_dir) / SUMMARY_NAME, summary)
    return summary


def _full_info(dimension: str, videos: Sequence[TinyVideo]) -> list[dict[str, Any]]:
    """VBench's `{name}_full_info.json`: one entry per prompt with the videos it scored."""
    entries: dict[str, dict[str, Any]] = {}
    for v in videos:
        e = entries.setdefault(v.prompt, {"prompt_en": v.prompt, "dimension": list(v.entry.dimensions),
                                          "auxiliary_info": v.entry.auxiliary_info, "video_list": []})
        e["video_list"].append(str(v.path))
    return list(entries.values())


def score_tiny(
    videos_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    dimensions: Sequence[str] | None = None,
    evaluators: Mapping[str, Any] | None = None,
    progress=None,
    *,
    force: bool = False,
    zoo: str | os.PathLike[str] | None = None,
    label: str | None = None,
    command: str | None = None,
) -> dict[str, float]:
    """Score a folder of tiny-world videos; returns {dimension: aggregate}.

    Writes the result files into `out_dir` (created). Dimensions with a complete result file
    are kept unless `force`. `evaluators`: `load_tiny_evaluators(...)`, loaded from `zoo` when
    None (and only if a requested dimension needs one). `progress`: a rich Progress, a
    callable taking (done, total) in videos, or None. Raises TinyScoreError on a
    user-facing failure (missing or undecodable videos, bad suite_info.json, incomplete zoo).
    """
    videos_dir = Path(videos_dir).resolve()
    out_dir = Path(out_dir).resolve()
    dims = resolve_dimensions(dimensions)
    if not videos_dir.is_dir():
        raise TinyScoreError(f"videos folder not found: {videos_dir}")
    suite = load_suite(videos_dir)
    matched = match_videos(videos_dir, dims, suite)

    if out_dir.exists() and not out_dir.is_dir():
        raise TinyScoreError(f"--out {out_dir} is an existing file, not a folder")
    done = {} if force else {d: v for d in dims if (v := read_complete_result(result_path(out_dir, d), d)) is not None}
    todo = [d for d in dims if d not in done]
    # Input problems surface before bench_scoring.json is written, so that it never records
    # "failed" for what was a bad input: every video's header, then the evaluators' files.
    from bench.video_io import VideoReadError, probe_video

    for path in dict.fromkeys(v.path for d in todo for v in matched[d]):
        try:
            probe_video(path)
        except VideoReadError as err:
            raise TinyScoreError(str(err)) from None
    if todo and evaluators is None and any(d not in PIXEL_DIMENSIONS for d in todo):
        evaluators = load_evaluators(zoo)
        zoo_given = False
    else:
        zoo_given = evaluators is not None
    out_dir.mkdir(parents=True, exist_ok=True)

    scoring_path = out_dir / SCORING_NAME
    try:
        previous = json.loads(scoring_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    scoring: dict[str, Any] = {
        "benchmark": BENCHMARK,
        "videos_dir": str(videos_dir),
        "label": label or videos_dir.name,
        "dimensions": dims,
        "suite": dict(suite.record),
        "zoo": zoo_record(zoo, zoo_given),
        "videos": {d: {"prompts": len({v.prompt for v in matched[d]}), "videos": len(matched[d])} for d in dims},
        "settings": {
            "presence_threshold": PRESENCE_THRESHOLD,
            "spatial_box_half_width": PAIR_BOX_HALF,
            "optical_flow": {"method": "opencv farneback, grayscale", "min_side": FLOW_MIN_SIDE, **FARNEBACK},
        },
        "skipped_already_complete": sorted(done),
        "seconds": {d: t for d, t in (previous.get("seconds") or {}).items() if d in done},
        "versions": _versions(),
        "command": command,
        "started": _now(),
        "finished": None,
        "status": "running",
    }
    _atomic_write_json(scoring_path, scoring)

    results = dict(done)
    if todo:
        t0 = time.time()
        try:
            per_video = _evaluate({d: matched[d] for d in todo}, evaluators, progress, zoo)
        except TinyScoreError as err:
            if err.code == INPUT_ERROR:  # e.g. a video whose frames do not decode: not a failed run
                _restore(scoring_path, previous)
            else:
                scoring.update(status=f"failed: {type(err).__name__}", finished=_now())
                _atomic_write_json(scoring_path, scoring)
            raise
        except BaseException as err:
            scoring.update(status=f"failed: {type(err).__name__}", finished=_now())
            _atomic_write_json(scoring_path, scoring)
            raise
        seconds = round(time.time() - t0, 2)
        for d in todo:
            _atomic_write_json(out_dir / f"{d}_full_info.json", _full_info(d, matched[d]))
            # The eval result last: its presence is what marks the dimension as done.
            results[d] = aggregate(per_video[d])
            _atomic_write_json(result_path(out_dir, d), {d: [results[d], per_video[d]]})
            # One batched pass scores every dimension; its time is shared out per video.
            scoring["seconds"][d] = round(seconds * len(matched[d]) / max(1, sum(len(matched[x]) for x in todo)), 2)
    write_summary(out_dir)
    scoring.update(finished=_now(), status="complete")
    _atomic_write_json(scoring_path, scoring)
    return {d: results[d] for d in dims}


def _restore(path: Path, previous: dict) -> None:
    """bench_scoring.json back to what it said before this run (absent if it was absent)."""
    if previous:
        _atomic_write_json(path, previous)
    else:
        path.unlink(missing_ok=True)


def load_tiny_per_video(out_dir: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """Per-video values of a finished tiny scoring folder, each with its prompt:
    {dimension: [{"prompt", "index", "video_path", "value"}]} (for bootstrapping over prompts)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for d in DIMENSIONS:
        path = result_path(Path(out_dir), d)
        if read_complete_result(path, d) is None:
            continue
        rows = json.loads(path.read_text(encoding="utf-8"))[d][1]
        recs = []
        for r in rows:
            name = Path(r["video_path"]).name
            m = _NAME.match(name)
            prompt = r.get("prompt") or (m.group("prompt") if m else Path(name).stem)
            index = r.get("index", int(m.group("index")) if m else 0)
            recs.append({"prompt": prompt, "index": index, "video_path": r["video_path"], "value": float(r["video_results"])})
        out[d] = recs
    return out


# =========================================================================== CLI


def default_out_dir(videos_dir: Path, label: str) -> Path:
    """`RUN/scores/<label>-tiny/` for a run's videos, else `<videos-dir>-tiny` beside it."""
    return results.default_out_dir(videos_dir, label, BENCHMARK)


def tiny_command(
    run: Optional[Path] = results.run_option(),
    videos: Optional[str] = results.videos_option(),
    videos_dir: Optional[Path] = results.videos_dir_option(),
    dimension: Optional[list[str]] = typer.Option(None, "--dimension", "-d", help="Dimension; repeatable (default: all 16)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN/scores/<label>-tiny/)."),
    zoo: Optional[Path] = typer.Option(None, "--zoo", help="Tiny-world zoo (default: $BENCH_TINY_ZOO or the shipped one)."),
    force: bool = typer.Option(False, "--force", help="Recompute dimensions that already have a complete result."),
    threads: int = typer.Option(1, "--threads", help="torch intra-op threads (1 is fastest beside other jobs)."),
) -> None:
    """Score tiny-world videos with the tiny benchmark (VBench's 16 dimensions, tiny evaluators)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    err, out_console = Console(stderr=True), Console()
    try:
        if threads < 1:
            raise TinyScoreError(f"--threads must be >= 1, got {threads}")
        vdir, label = resolve_videos(run, videos, videos_dir)
        dims = resolve_dimensions(dimension)
        out_dir = (out or default_out_dir(vdir, label)).resolve()
        import torch

        torch.set_num_threads(max(1, threads))
        for d in dims:
            if not force and read_complete_result(result_path(out_dir, d), d) is not None:
                err.print(f"[dim]{d}: already scored, skipped (--force redoes it)[/]", soft_wrap=True)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True) as progress:
            summary = score_tiny(vdir, out_dir, dims, progress=progress, force=force, zoo=zoo, label=label,
                                 command=" ".join(["bench", *sys.argv[1:]]))
    except KeyboardInterrupt:
        raise Interrupted("interrupted; rerun the same command to resume (finished dimensions are kept)") from None
    # Any other error (TinyScoreError's code, ...) goes to bench's one handler (bench/console.py).

    table = Table(title=f"tiny benchmark — {label}", show_header=True)
    table.add_column("dimension")
    table.add_column("score", justify="right")
    for d, v in summary.items():
        table.add_row(d, f"{v:.4f}")
    out_console.print(table)
    out_console.print(f"results: {out_dir}", soft_wrap=True)
