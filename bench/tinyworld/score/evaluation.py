"""The evaluators' passes over a folder's videos (frame probe, quality net, clip probe, video-text model, optical flow) and the dimensions' scores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from bench.scoring import results
from bench.tinyworld.suite import DIMENSIONS
from bench.tinyworld.score.suite import (
    DECODE_STAGE, FLOW_DIMENSIONS, FRAME_PROBE_STAGE, PIXEL_DIMENSIONS, PRESENCE_THRESHOLD, QUALITY_STAGE,
    TinyScoreError, TinyVideo, match_videos,
)
from bench.tinyworld.score.decoding import Clip, _Tracker, _clip_tensor, _to_tensor, decode
from bench.tinyworld.score.formulas import (
    consistency_score, dynamic_degree_details, motion_smoothness_score, position_score, temporal_flickering_score,
)


# Which evaluator pass each dimension needs (VBench's evaluator -> the tiny world's).
FRAME_PROBE_DIMENSIONS = frozenset({
    "subject_consistency", "background_consistency", "object_class", "multiple_objects", "color",
    "spatial_relationship", "scene", "appearance_style",
})
QUALITY_NET_DIMENSIONS = frozenset({"aesthetic_quality", "imaging_quality"})
CLIP_PROBE_DIMENSIONS = frozenset({"human_action", "temporal_style"})
VIDEO_TEXT_DIMENSIONS = frozenset({"overall_consistency"})
PROBE_KEYS = ("presence", "color", "position", "scene", "style", "object_features", "scene_features")
CLIP_PROBE_STAGE, VIDEO_TEXT_STAGE, FLOW_STAGE = "clip probe", "video-text model", "optical flow"

# Frames per forward pass of the per-frame evaluators, clips per pass of the clip evaluators.
FRAME_BATCH = 512
CLIP_BATCH = 64


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


