"""Which prompt serves which dimension (the tiny suite, or a folder's suite_info.json) and which videos answer each prompt."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from bench.scoring.results import ScoreError
from bench.tinyworld.suite import DIMENSIONS, TinyPrompt, tiny_suite


if TYPE_CHECKING:
    import torch

BENCHMARK = "tiny"
SUITE_INFO_NAME = "suite_info.json"
VIDEO_SUFFIX = ".mp4"
PARTIAL_SUFFIX = ".partial.mp4"  # bench.video_io.TMP_SUFFIX: a video still being written
FLOW_DIMENSIONS = frozenset({"motion_smoothness", "dynamic_degree"})
PIXEL_DIMENSIONS = FLOW_DIMENSIONS | {"temporal_flickering"}  # no network needed
# Progress stages, in the order they run.
DECODE_STAGE, FRAME_PROBE_STAGE, QUALITY_STAGE = "decode videos", "frame probe", "quality net"

# A shape counts as detected in a frame when its presence probability exceeds this
# (GRiT's detections play this role in VBench's object_class / multiple_objects / color).
PRESENCE_THRESHOLD = 0.5

# The frame probe predicts object centres, not boxes. For VBench's IoU term in
# get_position_score the objects get square boxes of the world's nominal size in two-object
# clips: world.sample_pair draws radii in [0.26, 0.32] screen units (half-width 0.29).
PAIR_BOX_HALF = 0.29

# Optical flow (the tiny world's RAFT and AMT): OpenCV's Farneback on grayscale frames.
# Farneback's pyramid needs some room: frames are upscaled (bicubic) until the short side is
# at least FLOW_MIN_SIDE pixels and the flow is scaled back, so that flow is in pixels of the
# video as VBench's is. The window (9 px at the upscaled size, 4.5 px of a 32 px frame)
# resolves the spinning of a small star, which the default 15 px window averages away.
FLOW_MIN_SIDE = 64
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


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


