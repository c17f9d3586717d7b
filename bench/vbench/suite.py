"""VBench's prompt suite and the file names VBench's standard mode expects.

The suite is VBench's own `VBench_full_info.json`: taken from the installed `vbench`
distribution when the current interpreter can import it, else from the copy shipped in
`bench/vbench/data/` (its provenance is in `VBench_full_info.SOURCE.txt` beside it).

Facts this module encodes (vbench 0.1.5):
* The json has 946 entries but 944 distinct prompt strings: two prompts appear once for
  `appearance_style` and once for `overall_consistency`/`aesthetic_quality`/
  `imaging_quality`. VBench looks videos up by prompt string, so one set of videos per
  distinct prompt serves every entry; `load_vbench_suite` merges duplicates.
* Standard mode looks for `{prompt}-{index}.mp4`, index 0..4, directly inside the videos
  folder (`VBench.build_full_info_json`).
* temporal_flickering is meant to be scored on static videos only. VBench's docs ask for 25
  samples per temporal_flickering prompt; `vbench static_filter` (vbench/cli/static_filter.py)
  scans `{prompt}-{i}.mp4` in *sorted file-name order*, runs a RAFT optical-flow check on
  each, keeps the first 5 it finds static and copies them to
  `<result_path>/filtered_videos/{prompt}-{k}.mp4` (k renumbered 0..4; fewer when fewer
  pass), writing `<result_path>/filtered_static_video.json` with the per-prompt outcome.
  temporal_flickering is then evaluated on that `filtered_videos/` folder.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

FULL_INFO_NAME = "VBench_full_info.json"
SHIPPED_FULL_INFO = Path(__file__).parent / "data" / FULL_INFO_NAME
SHIPPED_SOURCE = Path(__file__).parent / "data" / "VBench_full_info.SOURCE.txt"

VIDEO_SUFFIX = ".mp4"
VIDEOS_PER_PROMPT = 5

# VBench's 16 dimensions, quality then semantic, in VBench's own order.
from bench.vbench.constants import QUALITY_DIMENSIONS, SEMANTIC_DIMENSIONS  # noqa: E402  (one source of truth)
ALL_DIMENSIONS = QUALITY_DIMENSIONS + SEMANTIC_DIMENSIONS

# Longest file name (in bytes) that ext4/xfs/apfs accept.
MAX_FILENAME_BYTES = 255


@dataclass(frozen=True)
class OversampleRule:
    """How VBench oversamples a dimension and filters it back down (data, not code)."""

    dimension: str
    n_sampled: int  # videos generated per prompt: {prompt}-0 .. {prompt}-(n_sampled-1)
    n_kept: int  # videos the filter keeps per prompt, renumbered 0..n_kept-1
    filter_command: str  # VBench's CLI verb that does the filtering
    filter_source: str  # where the rule lives in VBench's source
    filtered_subdir: str  # folder under the filter's --result_path holding kept videos
    filter_info_file: str  # json under --result_path: {prompt: {static_count, static_path}}


TEMPORAL_FLICKERING_OVERSAMPLING = OversampleRule(
    dimension="temporal_flickering",
    n_sampled=25,
    n_kept=5,
    filter_command="vbench static_filter --videos_path DIR [--result_path ./filter_results]",
    filter_source="vbench/cli/static_filter.py (RAFT weights: raft_model/models/raft-things.pth)",
    filtered_subdir="filtered_videos",
    filter_info_file="filtered_static_video.json",
)


@dataclass(frozen=True)
class PromptEntry:
    """One distinct VBench prompt and everything VBench's json says about it."""

    prompt: str
    dimensions: tuple[str, ...]  # every dimension the prompt serves, in json order
    auxiliary_info: dict = field(default_factory=dict)  # {dimension: {...}}, as in the json


@dataclass(frozen=True)
class SuiteSource:
    path: Path
    origin: str  # "installed vbench" or "shipped copy"
    version: str | None


def _installed_full_info() -> Path | None:
    """The json inside an importable `vbench`, found without importing it.

    Importing vbench pulls torch, decord and friends; `find_spec` on a top-level name
    only locates the package folder.
    """
    try:
        spec = importlib.util.find_spec("vbench")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / FULL_INFO_NAME
        if candidate.is_file():
            return candidate
    return None


def _shipped_version() -> str | None:
    for line in SHIPPED_SOURCE.read_text(encoding="utf-8").splitlines():
        if line.startswith("version:"):
            return line.split(":", 1)[1].strip()
    return None


def suite_source() -> SuiteSource:
    """Where the prompt suite is read from in this interpreter."""
    installed = _installed_full_info()
    if installed is not None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("vbench")
        except PackageNotFoundError:
            found = None
        return SuiteSource(installed, "installed vbench", found)
    return SuiteSource(SHIPPED_FULL_INFO, "shipped copy", _shipped_version())


def full_info_path() -> Path:
    return suite_source().path


@lru_cache(maxsize=4)
def _read_full_info(path: str) -> tuple[dict, ...]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a json list of prompt entries")
    return tuple(data)


def load_full_info() -> list[dict]:
    """VBench's json entries as they are (946 for vbench 0.1.5, duplicates included)."""
    return [dict(e) for e in _read_full_info(str(full_info_path()))]


def _check_dimensions(dimensions: list[str] | None) -> set[str] | None:
    if dimensions is None:
        return None
    unknown = sorted(set(dimensions) - set(ALL_DIMENSIONS))
    if unknown:
        raise ValueError(
            f"unknown VBench dimension(s) {unknown}; known: {', '.join(ALL_DIMENSIONS)}"
        )
    return set(dimensions)


def load_vbench_suite(dimensions: list[str] | None = None) -> list[PromptEntry]:
    """Distinct prompts (json order of first appearance), duplicates merged.

    `dimensions` keeps only prompts serving at least one of them; an entry still lists
    every dimension its prompt serves, since one set of videos is scored for all of them.
    """
    wanted = _check_dimensions(dimensions)
    merged: dict[str, tuple[list[str], dict]] = {}
    for entry in _read_full_info(str(full_info_path())):
        prompt = entry["prompt_en"]
        dims, aux = merged.setdefault(prompt, ([], {}))
        for d in entry["dimension"]:
            if d not in dims:
                dims.append(d)
        aux.update(entry.get("auxiliary_info") or {})
    return [
        PromptEntry(prompt, tuple(dims), aux)
        for prompt, (dims, aux) in merged.items()
        if wanted is None or wanted & set(dims)
    ]


def check_prompt_filename(prompt: str, max_index: int = VIDEOS_PER_PROMPT - 1) -> None:
    """Raise ValueError if `{prompt}-{max_index}.mp4` cannot be a file name."""
    if not prompt:
        raise ValueError("empty prompt: VBench names videos after their prompt")
    bad = [c for c in ("/", "\0") if c in prompt]
    if bad:
        shown = ", ".join("'/'" if c == "/" else "NUL" for c in bad)
        raise ValueError(
            f"prompt {prompt!r} contains {shown}, which cannot appear in a file name; "
            "VBench names each video {prompt}-{index}.mp4"
        )
    longest = f"{prompt}-{max_index}{VIDEO_SUFFIX}"
    n_bytes = len(longest.encode("utf-8"))
    if n_bytes > MAX_FILENAME_BYTES:
        raise ValueError(
            f"prompt {prompt!r} gives the file name {longest!r} of {n_bytes} bytes "
            f"(UTF-8); file names are limited to {MAX_FILENAME_BYTES} bytes"
        )


def standard_video_filenames(prompt: str, n_videos: int = VIDEOS_PER_PROMPT) -> list[str]:
    """`{prompt}-0.mp4` .. `{prompt}-{n-1}.mp4`, as VBench's standard mode looks them up."""
    if n_videos < 1:
        raise ValueError(f"n_videos must be >= 1, got {n_videos}")
    check_prompt_filename(prompt, n_videos - 1)
    return [f"{prompt}-{i}{VIDEO_SUFFIX}" for i in range(n_videos)]


def oversampled_video_filenames(
    prompt: str, rule: OversampleRule = TEMPORAL_FLICKERING_OVERSAMPLING
) -> list[str]:
    """All files to generate for an oversampled prompt: `{prompt}-0..{n_sampled-1}.mp4`."""
    return standard_video_filenames(prompt, rule.n_sampled)


def static_filter_scan_order(
    prompt: str, rule: OversampleRule = TEMPORAL_FLICKERING_OVERSAMPLING
) -> list[str]:
    """The order VBench's static filter tries a prompt's files: plain string sort.

    So `-10`..`-19` come before `-2`; the 5 kept are the first static ones in this order.
    """
    return sorted(oversampled_video_filenames(prompt, rule))


def static_filter_kept_filenames(
    prompt: str, rule: OversampleRule = TEMPORAL_FLICKERING_OVERSAMPLING
) -> list[str]:
    """Files the static filter writes for a prompt, relative to its --result_path."""
    return [f"{rule.filtered_subdir}/{name}" for name in standard_video_filenames(prompt, rule.n_kept)]


def planned_video_files(
    dimensions: list[str] | None = None,
    n_videos: int = VIDEOS_PER_PROMPT,
    oversample_temporal_flickering: bool = False,
) -> list[str]:
    """Every video file (relative to the videos folder) the suite needs, each once.

    Standard mode: 944 prompts x 5 = 4,720 files. With `oversample_temporal_flickering`,
    each temporal_flickering prompt gets `{prompt}-0..24.mp4` instead of `-0..4`: 75
    prompts x 20 extra files = 1,500 more (6,220 in all). Those 25 go through
    `vbench static_filter`, whose `filtered_videos/{prompt}-0..4.mp4` (see
    `static_filter_kept_filenames`) is then the folder temporal_flickering is scored on.
    """
    rule = TEMPORAL_FLICKERING_OVERSAMPLING
    files: list[str] = []
    for entry in load_vbench_suite(dimensions):
        if oversample_temporal_flickering and rule.dimension in entry.dimensions:
            files.extend(standard_video_filenames(entry.prompt, max(n_videos, rule.n_sampled)))
        else:
            files.extend(standard_video_filenames(entry.prompt, n_videos))
    return files
