"""What `bench score vbench` scores: the output folder's names, the dimensions and devices asked for, the videos each dimension needs and their fingerprint."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from rich.console import Console

from bench.scoring import results
from bench.scoring.results import ScoreError
from bench.vbench import suite


BENCH_DIR = ".bench"  # the harness's files; cal_final_score.py skips names starting with "."
MISSING_EXIT = 2  # the driver's and our code for "a prerequisite is missing"
DEFAULT_TIMEOUT_S = 6 * 3600  # one dimension of the full standard suite on one GPU takes hours
MODES = ("vbench_standard", "custom_input")
# vbench 0.1.5 __init__.py check_dimension_requires_extra_info: refused in custom_input mode.
CUSTOM_UNSUPPORTED = frozenset(
    {"object_class", "multiple_objects", "scene", "appearance_style", "color", "spatial_relationship"}
)
CUSTOM_DIMENSIONS = tuple(d for d in suite.ALL_DIMENSIONS if d not in CUSTOM_UNSUPPORTED)

err_console = Console(stderr=True)


class DimensionsFailed(ScoreError):
    """Some dimensions failed after the others finished; `summary` holds the finished ones."""

    def __init__(self, message: str, code: int, summary: dict[str, float]):
        super().__init__(message, code)
        self.summary = summary


# --------------------------------------------------------------------------- inputs


def default_out_dir(videos_dir: Path, label: str) -> Path:
    """`RUN/scores/<label>-vbench/` for a run's videos, else `<videos-dir>-vbench` beside it."""
    return results.default_out_dir(videos_dir, label, "vbench")


def resolve_dimensions(dimensions: list[str] | None, mode: str = "vbench_standard") -> list[str]:
    if mode not in MODES:
        raise ScoreError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if not dimensions:
        return list(suite.ALL_DIMENSIONS if mode == "vbench_standard" else CUSTOM_DIMENSIONS)
    unknown = [d for d in dimensions if d not in suite.ALL_DIMENSIONS]
    if unknown:
        raise ScoreError(
            f"unknown dimension(s): {', '.join(unknown)}\nknown: {', '.join(suite.ALL_DIMENSIONS)}"
        )
    if mode == "custom_input":
        refused = [d for d in dimensions if d in CUSTOM_UNSUPPORTED]
        if refused:
            raise ScoreError(
                f"VBench does not score {', '.join(refused)} in custom_input mode (they need the "
                f"standard suite's auxiliary info); custom_input supports: {', '.join(CUSTOM_DIMENSIONS)}"
            )
    return list(dict.fromkeys(dimensions))


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # a broken torch in the main env must not stop CPU scoring
        return "cpu"


def parse_devices(device: str | None, devices: str | None) -> list[str]:
    """The device of each worker: `--devices 0,1` (CUDA indices, or `cpu`) or one `--device`."""
    if device is not None and devices is not None:
        raise ScoreError("give --device or --devices, not both")
    if devices is None:
        if device is None:
            return [default_device()]
        if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise ScoreError(f"--device {device!r}: use cpu, cuda or cuda:N")
        if device.startswith("cuda") and default_device() != "cuda":
            raise ScoreError(f"--device {device}: no CUDA device is visible here; use --device cpu")
        return [device]
    items = [s.strip() for s in devices.split(",")]
    if not items or any(not s for s in items):
        raise ScoreError(f"--devices {devices!r}: a comma-separated list such as 0,1 (CUDA indices) or cpu,cpu")
    for s in items:
        if s != "cpu" and not s.isdigit():
            raise ScoreError(f"--devices {devices!r}: {s!r} is neither a CUDA index nor cpu")
    if any(s != "cpu" for s in items) and default_device() != "cuda":
        raise ScoreError(f"--devices {devices}: no CUDA device is visible here; use cpu entries")
    return items


def _entries(full_info: Path | None, dimensions: list[str]) -> list[suite.PromptEntry]:
    """The prompt entries for `dimensions`: from `--full-info` when given, else VBench's suite."""
    if full_info is None:
        return suite.load_vbench_suite(dimensions)
    try:
        data = json.loads(full_info.read_text(encoding="utf-8"))
        merged: dict[str, list[str]] = {}
        for e in data:
            merged.setdefault(e["prompt_en"], []).extend(e["dimension"])
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ScoreError(f"--full-info {full_info}: not a VBench full-info file ({err})") from None
    return [suite.PromptEntry(p, tuple(dict.fromkeys(d))) for p, d in merged.items() if set(d) & set(dimensions)]


def dimension_files(videos_dir: Path, dimension: str, mode: str, full_info: Path | None = None) -> list[str]:
    """The file names VBench reads for `dimension` that exist in `videos_dir`, sorted."""
    present = {p.name for p in videos_dir.iterdir() if p.is_file() or p.is_symlink()}
    if mode == "custom_input":
        return sorted(n for n in present if n.endswith(suite.VIDEO_SUFFIX))
    expected = [n for e in _entries(full_info, [dimension]) for n in suite.standard_video_filenames(e.prompt)]
    return sorted(n for n in expected if n in present)


def inventory(videos_dir: Path, dimensions: list[str], mode: str = "vbench_standard",
              full_info: Path | None = None) -> dict[str, dict]:
    """{dimension: {expected, found, missing_examples}} using VBench's naming."""
    present = {p.name for p in videos_dir.iterdir()}
    result = {}
    for d in dimensions:
        if mode == "custom_input":
            found = len(dimension_files(videos_dir, d, mode))
            result[d] = {"expected": found, "found": found, "missing_examples": []}
            continue
        expected = [n for e in _entries(full_info, [d]) for n in suite.standard_video_filenames(e.prompt)]
        missing = [n for n in expected if n not in present]
        result[d] = {
            "expected": len(expected),
            "found": len(expected) - len(missing),
            "missing_examples": missing[:3],
        }
    return result


def oversampled_unfiltered(videos_dir: Path) -> bool:
    """True if some temporal_flickering prompt has a video past index 4 (25-sample mode)."""
    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    return any(
        (videos_dir / f"{e.prompt}-{rule.n_kept}{suite.VIDEO_SUFFIX}").exists()
        for e in suite.load_vbench_suite([rule.dimension])
    )


def files_fingerprint(folder: Path, names: list[str]) -> str:
    """sha256 of the sorted `name<TAB>size` lines: changes when a video is added, removed or rewritten."""
    h = hashlib.sha256()
    for n in sorted(names):
        try:
            size = (folder / n).stat().st_size
        except OSError:
            size = -1
        h.update(f"{n}\t{size}\n".encode("utf-8"))
    return h.hexdigest()


def videos_view(videos_dir: Path, view: Path) -> Path | None:
    """A folder of links to just the .mp4 files, when `videos_dir` holds anything else.

    VBench's standard mode takes the video suffix from whichever entry `os.listdir` returns
    first; a `manifest.jsonl` (run layout) listed first makes every video look missing.
    """
    entries = list(videos_dir.iterdir())
    if all(p.suffix == suite.VIDEO_SUFFIX and p.is_file() for p in entries):
        return None
    if view.exists():
        shutil.rmtree(view)
    view.mkdir(parents=True)
    for p in entries:
        if p.suffix == suite.VIDEO_SUFFIX and p.is_file():
            (view / p.name).symlink_to(p.resolve())
    return view


def custom_prompt_map(videos_dir: Path) -> dict[str, str] | None:
    """{file name: prompt} from `bench generate`'s manifest, for custom_input mode.

    Without a manifest VBench takes each prompt from the file name (`{prompt}-{i}.mp4`).
    """
    from bench.generate import read_manifest

    records = read_manifest(videos_dir)
    if not records:
        return None
    prompts = {name: rec["prompt"] for name, rec in records.items()
               if name.endswith(suite.VIDEO_SUFFIX) and isinstance(rec.get("prompt"), str)}
    # VBench wants a prompt for every video it lists; one without a record gets VBench's own
    # rule (vbench/utils.py get_prompt_from_filename: the stem without a trailing -N).
    for p in videos_dir.iterdir():
        if p.suffix == suite.VIDEO_SUFFIX and p.name not in prompts:
            prompts[p.name] = re.sub(r"-\d+$", "", p.stem)
    return prompts


