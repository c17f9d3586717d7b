"""Scoring a folder into VBench's result formats: per-dimension results, bench_scoring.json, the summary; `score_tiny`."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.errors import INPUT_ERROR
from bench.scoring import results
from bench.scoring.results import read_complete_result, result_path, write_result_json
from bench.tinyworld.suite import DIMENSIONS
from bench.tinyworld.score.suite import (
    BENCHMARK, FARNEBACK, FLOW_MIN_SIDE, PAIR_BOX_HALF, PIXEL_DIMENSIONS, PRESENCE_THRESHOLD, TinyScoreError, TinyVideo,
    _NAME, load_suite, match_videos,
)
from bench.tinyworld.score.evaluation import _evaluate, aggregate, load_evaluators, resolve_dimensions


SCORING_NAME = "bench_scoring.json"
SUMMARY_NAME = "summary.json"


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


