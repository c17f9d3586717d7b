"""The result-folder protocol both scorers share (`bench score vbench`, `bench score tiny`).

Inputs: a videos folder named either by `--run RUN [--videos LABEL]` (RUN/videos/<label>/)
or by `--videos-dir DIR`. Outputs: `RUN/scores/<label>-<benchmark>/` (or `<DIR>-<benchmark>`
beside a loose folder) holding one `{dimension}_eval_results.json` per dimension in VBench's
format, `[aggregate, [per-video records]]`, written atomically; a dimension whose file is
complete is skipped on a rerun (docs/conventions.md has the formats).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from t2v_turbo_core.safe_io import atomic_write_json


def run_option():
    import typer

    return typer.Option(None, "--run", help="Run directory; videos in RUN/videos/<label>/.")


def videos_option():
    import typer

    return typer.Option(None, "--videos", help="Video set label under RUN/videos/ (default: the only one).")


def videos_dir_option():
    import typer

    return typer.Option(None, "--videos-dir", help="Score this folder of {prompt}-{index}.mp4 directly.")


class ScoreError(BenchError):
    """A user-facing failure of a scorer: message plus exit code (2 unless said otherwise)."""


def resolve_videos(run: Path | None, label: str | None, videos_dir: Path | None) -> tuple[Path, str]:
    """(videos folder, label) from `--run [--videos]` or `--videos-dir`."""
    if (run is None) == (videos_dir is None):
        raise ScoreError("give exactly one of --run RUN or --videos-dir DIR")
    if videos_dir is not None:
        if label is not None:
            raise ScoreError("--videos LABEL goes with --run; with --videos-dir the folder is the label")
        if not videos_dir.is_dir():
            raise ScoreError(f"videos folder not found: {videos_dir}")
        return videos_dir.resolve(), videos_dir.resolve().name
    root = run / "videos"
    if not root.is_dir():
        raise ScoreError(f"{run} has no videos/ folder (expected {root}/<label>/)")
    labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if label is None:
        if len(labels) != 1:
            listed = ", ".join(labels) if labels else "none"
            raise ScoreError(f"{root} holds {len(labels)} video sets ({listed}); choose one with --videos LABEL")
        label = labels[0]
    elif label not in labels:
        raise ScoreError(f"no video set '{label}' in {root}; found: {', '.join(labels) or 'none'}")
    return (root / label).resolve(), label


def default_out_dir(videos_dir: Path, label: str, benchmark: str) -> Path:
    """`RUN/scores/<label>-<benchmark>/` for a run's videos, else `<videos-dir>-<benchmark>` beside it."""
    if videos_dir.parent.name == "videos":
        return videos_dir.parent.parent / "scores" / f"{label}-{benchmark}"
    return videos_dir.parent / f"{videos_dir.name}-{benchmark}"


def result_path(out_dir: Path, dimension: str) -> Path:
    return Path(out_dir) / f"{dimension}_eval_results.json"


def read_complete_result(path: Path, dimension: str) -> float | None:
    """The aggregate if `path` is a complete VBench result for `dimension`, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        aggregate, per_video = data[dimension]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(per_video, list) or not isinstance(aggregate, (int, float)):
        return None
    if not math.isfinite(aggregate):
        return None
    return float(aggregate)


def write_result_json(path: Path, data: Any) -> None:
    """A result file as VBench writes its own (indented, UTF-8 kept), atomically."""
    atomic_write_json(path, data, indent=2, ensure_ascii=False, mkdir=False)
