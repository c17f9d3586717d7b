"""VBench's formulas where a formula is not a network: flicker, motion smoothness, dynamic degree, the probes' scores."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from bench.tinyworld.score.suite import FARNEBACK, FLOW_MIN_SIDE, PAIR_BOX_HALF


# vbench/spatial_relationship.py get_position_score: boxes overlapping by IoU >= 0.1 score
# iou_threshold / iou instead of 1.
SPATIAL_IOU_THRESHOLD = 0.1


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


