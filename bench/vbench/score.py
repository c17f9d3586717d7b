"""`bench score vbench`: score a videos folder with the official `vbench` package.

VBench runs in its own virtualenv (bench/vbench/env.py) through a small driver script
(bench/vbench/driver.py), one subprocess per dimension. Before anything is installed or
started, every weight file the requested dimensions read is checked
(bench/vbench/weights.py): VBench would otherwise download missing files itself.

Output folder (default `RUN/scores/<label>-vbench/`):
  {dimension}_eval_results.json  VBench's own result file, per-video results included
  {dimension}_full_info.json     VBench's record of which videos it scored
  .bench/                        the harness's own files, in a dot-folder so that the folder
                                 zipped as VBench's README says is a valid submission
                                 (VBench's scripts/cal_final_score.py skips dot entries):
    scoring.json                 per dimension: inputs, versions, device, filter, seconds
    summary.json                 {dimension: aggregate} for every finished dimension
    logs/{dimension}.log         everything VBench printed for that dimension
    static_filter/               VBench's static filter output (filtered_videos/, its json)
A dimension whose result file is complete and whose inputs (videos, vbench and torch
versions, mode, prompt suite, filter state) are unchanged is skipped on rerun (`--force`
redoes it); result files are staged in `.bench/partial/` and moved into place only once
VBench is done. A failing dimension does not stop the others: all failures are reported
together at the end, with a non-zero exit.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from t2v_turbo_core.safe_io import atomic_write
from bench.errors import Interrupted
from bench.scoring import results
from bench.scoring.results import ScoreError, read_complete_result, resolve_videos, result_path, write_result_json
from bench.vbench import env as vbench_env
from bench.vbench import weights as vbench_weights
from bench.vbench import suite

DRIVER = Path(__file__).with_name("driver.py")
BENCH_DIR = ".bench"  # the harness's files; cal_final_score.py skips names starting with "."
SCORING_NAME = "scoring.json"
SUMMARY_NAME = "summary.json"
LOGS_NAME = "logs"
STAGING_NAME = "partial"
VIEW_NAME = "videos-view"
FILTER_NAME = "static_filter"
LOCK_NAME = "lock"
# Files earlier versions of the harness wrote beside VBench's; they break cal_final_score.py.
LEGACY_TOP_LEVEL = ("summary.json", "bench_scoring.json", "vbench.log")
MISSING_EXIT = 2  # the driver's and our code for "a prerequisite is missing"
TIMEOUT_EXIT = 124
DEFAULT_TIMEOUT_S = 6 * 3600  # one dimension of the full standard suite on one GPU takes hours
# torch >= 2.6 loads with weights_only=True; vbench 0.1.5's checkpoints need the old default
# (see bench/vbench/driver.py). Set for every VBench subprocess and recorded per dimension.
CHILD_TORCH_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
MODES = ("vbench_standard", "custom_input")
# vbench 0.1.5 __init__.py check_dimension_requires_extra_info: refused in custom_input mode.
CUSTOM_UNSUPPORTED = frozenset(
    {"object_class", "multiple_objects", "scene", "appearance_style", "color", "spatial_relationship"}
)
CUSTOM_DIMENSIONS = tuple(d for d in suite.ALL_DIMENSIONS if d not in CUSTOM_UNSUPPORTED)

err_console = Console(stderr=True)
out_console = Console()


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


# --------------------------------------------------------------------------- results


_atomic_write_json = write_result_json


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _installed_full_info(env: vbench_env.VBenchEnv) -> Path | None:
    """The VBench_full_info.json VBench itself reads (inside the env's vbench package)."""
    found = sorted(env.root.glob("lib/python*/site-packages/vbench/VBench_full_info.json"))
    return found[0] if found else None


def _rewrite_paths(obj, old: str, new: str):
    """Point video paths recorded through the links folder back at the real videos."""
    if isinstance(obj, str):
        return new + obj[len(old) :] if obj.startswith(old) else obj
    if isinstance(obj, list):
        return [_rewrite_paths(x, old, new) for x in obj]
    if isinstance(obj, dict):
        return {k: _rewrite_paths(v, old, new) for k, v in obj.items()}
    return obj


def publish_dimension(staging: Path, out_dir: Path, dimension: str, view: Path | None, videos_dir: Path) -> float:
    """Validate VBench's files in `staging` and move them into `out_dir` atomically."""
    staged = staging / f"{dimension}_eval_results.json"
    if read_complete_result(staged, dimension) is None:
        raise ScoreError(
            f"VBench finished {dimension} without a usable result in {staged} "
            "(no videos scored, or a nan aggregate); see the log",
            code=1,
        )
    # The eval result last: its presence is what marks the dimension as done.
    for name in (f"{dimension}_full_info.json", f"{dimension}_eval_results.json"):
        src = staging / name
        if not src.exists():
            continue
        if view is not None:
            data = _rewrite_paths(json.loads(src.read_text(encoding="utf-8")), str(view), str(videos_dir))
            _atomic_write_json(out_dir / name, data)
        else:
            os.replace(src, out_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
    aggregate = read_complete_result(result_path(out_dir, dimension), dimension)
    assert aggregate is not None
    return aggregate


def write_summary(out_dir: Path) -> dict[str, float]:
    summary = {}
    for d in suite.ALL_DIMENSIONS:
        value = read_complete_result(result_path(out_dir, d), d)
        if value is not None:
            summary[d] = value
    _atomic_write_json(out_dir / BENCH_DIR / SUMMARY_NAME, summary)
    return summary


def export_zip(out_dir: Path, zip_path: Path) -> list[str]:
    """Pack VBench's result files (no harness files) as a submission zip, atomically."""
    names = sorted(p.name for p in out_dir.glob("*_eval_results.json"))
    if not names:
        raise ScoreError(f"--export-zip: no *_eval_results.json in {out_dir} to pack")

    def pack(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for n in names:
                zf.write(out_dir / n, arcname=n)

    atomic_write(zip_path, pack)
    return names


# --------------------------------------------------------------------------- running


@dataclass
class DimensionRun:
    dimension: str
    rc: int
    seconds: float
    missing_line: str | None = None
    timed_out: bool = False


def _child_env(cuda_visible: str | None) -> dict[str, str]:
    child_env = dict(os.environ)
    child_env.pop("PYTHONPATH", None)
    child_env.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)  # torch refuses it together with ours
    child_env.update(
        VBENCH_CACHE_DIR=str(vbench_weights.vbench_cache_dir()),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        **CHILD_TORCH_ENV,
    )
    if cuda_visible is not None:
        child_env["CUDA_VISIBLE_DEVICES"] = cuda_visible
    return child_env


_ACTIVE: set[subprocess.Popen] = set()  # VBench processes now running (one per worker)
_ACTIVE_LOCK = threading.Lock()


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_driver(env: vbench_env.VBenchEnv, *, args: list[str], label: str, staging: Path, device: str,
               log_path: Path, timeout_s: float | None) -> DimensionRun:
    """One driver call in the VBench env; its output appended to `log_path`.

    `device` is a worker's device: cpu, cuda, cuda:N or a bare CUDA index (then the child
    sees only that GPU, as `cuda`, like VBench's own launcher).
    """
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    cuda_visible = device if device.isdigit() else None
    child_device = "cuda" if cuda_visible is not None else device
    cmd = [str(env.python), str(DRIVER), *args, "--output-dir", str(staging), "--device", child_device]
    started = time.time()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    timed_out = False
    with open(log_path, "a", encoding="utf-8") as log:
        shown = f"CUDA_VISIBLE_DEVICES={cuda_visible} " if cuda_visible is not None else ""
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {label} on {device}\n$ {shown}{' '.join(cmd)}\n")
        log.flush()
        # cwd=staging: anything VBench writes to a relative path stays out of the way.
        # A session of its own: a timeout or Ctrl-C stops VBench and anything it started.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(cuda_visible),
                                cwd=staging, start_new_session=True)
        with _ACTIVE_LOCK:
            _ACTIVE.add(proc)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc, timed_out = TIMEOUT_EXIT, True
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE.discard(proc)
        log.write(f"===== exit {rc}{' (timeout)' if timed_out else ''} after {time.time() - started:.1f}s\n")
    missing = None
    if rc == MISSING_EXIT:
        for line in vbench_env.tail(log_path, 200).splitlines():
            if line.startswith("BENCH-VBENCH-MISSING:"):
                missing = line.split(":", 1)[1].strip()
    return DimensionRun(label, rc, time.time() - started, missing, timed_out)


@dataclass
class Scoring:
    """.bench/scoring.json: merged with what earlier runs recorded, saved after every change."""

    path: Path
    data: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def save(self) -> None:
        with self.lock:
            _atomic_write_json(self.path, self.data)

    def set_dimension(self, dimension: str, record: dict) -> None:
        with self.lock:
            self.data.setdefault("dimensions", {})[dimension] = record
            _atomic_write_json(self.path, self.data)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _install_env_with_progress() -> vbench_env.VBenchEnv:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    env = vbench_env.current_env()
    if env.is_ready():
        return env
    err_console.print(
        f"[bold]Creating the VBench environment[/] at {env.root} (first use only; a few minutes)",
        soft_wrap=True,
    )
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err_console, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def on_line(line: str) -> None:
            if line.startswith(("[", "VBench env ready", "waiting", "removing")):
                progress.console.print(escape(line), highlight=False, soft_wrap=True)
            elif line.strip():
                progress.update(task, description=line.strip()[:100])

        env = vbench_env.ensure_env(env.root, on_line)
    return env


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """One `bench score vbench` per output folder: a second one would wipe the first's staging."""
    bench_dir = out_dir / BENCH_DIR
    bench_dir.mkdir(parents=True, exist_ok=True)
    with open(bench_dir / LOCK_NAME, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ScoreError(
                f"another `bench score vbench` is writing to {out_dir} (it holds {bench_dir / LOCK_NAME}); "
                "wait for it to finish or choose another --out",
                code=1,
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _move_legacy_files(out_dir: Path) -> None:
    """Files an earlier harness version wrote beside VBench's go into .bench/legacy/."""
    legacy = out_dir / BENCH_DIR / "legacy"
    for name in LEGACY_TOP_LEVEL:
        p = out_dir / name
        if p.is_file():
            legacy.mkdir(parents=True, exist_ok=True)
            os.replace(p, legacy / name)


def pinned_versions() -> dict[str, str]:
    """The vbench and torch versions the VBench env is built with (what a result depends on)."""
    pins = dict(r.split("==", 1) for r in vbench_env.REQUIREMENTS if "==" in r)
    return {"vbench": pins["vbench"], "torch": pins["torch"]}


def dimension_inputs(*, videos_dir: Path, files: list[str], mode: str, full_info_sha256: str | None,
                     static_filter: bool) -> dict:
    """What a dimension's result depends on; a change means the result is stale."""
    return {
        "videos_dir": str(videos_dir),
        "files_sha256": files_fingerprint(videos_dir, files),
        "n_videos": len(files),
        "mode": mode,
        "full_info_sha256": full_info_sha256,
        "static_filter": static_filter,
        **pinned_versions(),
        "torch_env": dict(CHILD_TORCH_ENV),
    }


def _stale_reason(record: dict | None, inputs: dict) -> str | None:
    if not record or record.get("status") != "complete":
        return "no provenance record for it"
    old = record.get("inputs") or {}
    changed = [k for k in inputs if old.get(k) != inputs[k]]
    if not changed:
        return None
    return "changed since it was scored: " + ", ".join(changed)


def _filter_record(filter_dir: Path, source_dir: Path) -> dict:
    """What VBench's static filter kept, per prompt that had videos in `source_dir`."""
    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    info = _read_json(filter_dir / rule.filter_info_file)
    if not isinstance(info, dict):
        raise ScoreError(f"VBench's static filter wrote no readable {filter_dir / rule.filter_info_file}", code=1)
    present = {p.name for p in source_dir.iterdir()}
    kept: dict[str, int] = {}
    sampled: dict[str, int] = {}
    for e in suite.load_vbench_suite([rule.dimension]):
        n = sum(1 for name in suite.oversampled_video_filenames(e.prompt) if name in present)
        if n:
            sampled[e.prompt] = n
            kept[e.prompt] = int((info.get(e.prompt) or {}).get("static_count", 0))
    return {
        "ran": True,
        "kept_per_prompt": kept,
        "sampled_per_prompt": sampled,
        "prompts_with_fewer_than_5_kept": sorted(p for p, k in kept.items() if k < rule.n_kept),
        "videos_kept": sum(kept.values()),
    }


# --------------------------------------------------------------------------- the flow


@dataclass
class Job:
    """One VBench evaluate call to make."""

    dimension: str
    videos_path: Path  # what VBench reads (maybe a links folder)
    real_videos: Path  # what the result files should name
    view: Path | None
    inputs: dict
    extra: dict = field(default_factory=dict)  # recorded as-is (static filter details)
    prompt_file: Path | None = None


def score(videos_dir: Path, label: str, out_dir: Path, dimensions: list[str], device: str | None,
          force: bool, command_line: str, *, static_filter: bool | None = None, mode: str = "vbench_standard",
          full_info: Path | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S,
          devices: str | None = None, verify_hashes: bool = True) -> dict[str, float]:
    """The whole `bench score vbench` flow; raises ScoreError on a user-facing failure."""
    workers = parse_devices(device, devices)
    if full_info is not None and not full_info.is_file():
        raise ScoreError(f"--full-info {full_info}: no such file")
    failures: dict[str, tuple[int, str]] = {}

    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    oversampled = mode == "vbench_standard" and oversampled_unfiltered(videos_dir)
    want_filter = (
        rule.dimension in dimensions and mode == "vbench_standard"
        and (static_filter if static_filter is not None else oversampled)
    )

    missing = vbench_weights.missing_weights(dimensions, verify_hashes)
    if want_filter:
        raft = vbench_weights.static_filter_requirements()
        lacking = [r for r in raft if not r.present(verify_hashes)]
        if lacking:
            missing.setdefault(rule.dimension, []).extend(lacking)
    if missing and set(missing) >= set(dimensions):
        raise ScoreError(vbench_weights.format_missing(missing, verify_hashes), code=MISSING_EXIT)
    if missing:
        err_console.print(f"[yellow]warning[/]: {escape(vbench_weights.format_missing(missing, verify_hashes))}\n"
                          "The other dimensions are scored; these are reported again at the end.", soft_wrap=True)
        for d in missing:
            failures[d] = (MISSING_EXIT, vbench_weights.format_missing({d: missing[d]}, verify_hashes))

    counts = inventory(videos_dir, dimensions, mode, full_info)
    empty = [d for d, c in counts.items() if c["found"] == 0]
    if empty and set(empty) | set(failures) >= set(dimensions):
        if mode == "custom_input":
            raise ScoreError(f"no .mp4 videos in {videos_dir}")
        examples = "\n".join(f"  {d}: e.g. {counts[d]['missing_examples'][0]!r}" for d in empty)
        raise ScoreError(
            f"no videos in {videos_dir} for {', '.join(empty)}; VBench expects "
            f"{{prompt}}-{{index}}.mp4 for its own prompts:\n{examples}"
        )
    for d in empty:
        failures.setdefault(d, (2, f"no videos in {videos_dir} for {d}"))
    for d, c in counts.items():
        if 0 < c["found"] < c["expected"]:
            err_console.print(
                f"[yellow]warning[/]: {d}: {c['found']}/{c['expected']} videos present "
                f"(e.g. missing {escape(repr(c['missing_examples'][0]))}); VBench scores what is there",
                soft_wrap=True,
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):
        return _score_locked(
            videos_dir=videos_dir, label=label, out_dir=out_dir, dimensions=dimensions, workers=workers,
            force=force, command_line=command_line, want_filter=want_filter, oversampled=oversampled,
            mode=mode, full_info=full_info, timeout_s=timeout_s, failures=failures, counts=counts,
            explicit_filter=static_filter, verify_hashes=verify_hashes,
        )


def _score_locked(*, videos_dir: Path, label: str, out_dir: Path, dimensions: list[str], workers: list[str],
                  force: bool, command_line: str, want_filter: bool, oversampled: bool, mode: str,
                  full_info: Path | None, timeout_s: float | None, failures: dict[str, tuple[int, str]],
                  counts: dict, explicit_filter: bool | None, verify_hashes: bool) -> dict[str, float]:
    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    bench_dir = out_dir / BENCH_DIR
    logs = bench_dir / LOGS_NAME
    staging_root = bench_dir / STAGING_NAME
    _move_legacy_files(out_dir)

    scoring = Scoring(bench_dir / SCORING_NAME)
    scoring.data = _read_json(scoring.path) or {}
    if not isinstance(scoring.data.get("dimensions"), dict):
        scoring.data["dimensions"] = {}
    records: dict = scoring.data["dimensions"]

    # The prompt suite VBench will read; before the env exists, the shipped copy has the same bytes.
    full_info_file = full_info or suite.full_info_path()
    full_info_sha = _sha256_file(full_info_file)
    candidates = [d for d in dimensions if d not in failures]

    # Which dimensions need VBench, and why.
    todo: list[str] = []
    done: dict[str, float] = {}
    planned_inputs: dict[str, dict] = {}
    for d in candidates:
        filtered = want_filter and d == rule.dimension
        files = dimension_files(videos_dir, d, mode, full_info)
        if filtered:  # the filter's input: every sample of every temporal_flickering prompt
            present = {p.name for p in videos_dir.iterdir()}
            files = sorted(n for e in suite.load_vbench_suite([d])
                           for n in suite.oversampled_video_filenames(e.prompt) if n in present)
        inputs = dimension_inputs(videos_dir=videos_dir, files=files, mode=mode,
                                  full_info_sha256=full_info_sha, static_filter=filtered)
        planned_inputs[d] = inputs
        value = read_complete_result(result_path(out_dir, d), d)
        if value is not None and not force:
            reason = _stale_reason(records.get(d), inputs)
            if reason is None:
                done[d] = value
                err_console.print(f"[dim]{d}: already scored ({value:.4f}), skipped[/]", soft_wrap=True)
                continue
            err_console.print(f"[yellow]{d}[/]: rescoring, {escape(reason)}", soft_wrap=True)
        todo.append(d)

    if rule.dimension in dimensions and not want_filter and rule.dimension not in failures:
        why = (
            f"{videos_dir} has temporal_flickering videos numbered past {rule.n_kept - 1} but --no-static-filter "
            f"was given: VBench scores only -0..-{rule.n_kept - 1}, moving or not"
            if oversampled else
            f"the videos were not oversampled ({rule.n_sampled} per prompt; `bench generate --flicker-oversample`) "
            "and filtered"
            if mode == "vbench_standard" else "custom_input mode has no static filter"
        )
        err_console.print(
            f"[bold yellow]warning[/]: temporal_flickering is scored WITHOUT VBench's static filter ({why}). "
            "The official protocol scores only static videos (`--static-filter`); this value is not comparable "
            "with the leaderboard's.", soft_wrap=True,
        )

    env = _install_env_with_progress() if todo else vbench_env.current_env()
    if todo and any(d in vbench_weights.NEEDS_DETECTRON2 for d in todo):
        try:
            vbench_env.ensure_detectron2(env, lambda line: err_console.print(escape(line), soft_wrap=True))
        except vbench_env.VBenchEnvError as err:
            for d in [d for d in todo if d in vbench_weights.NEEDS_DETECTRON2]:
                failures[d] = (MISSING_EXIT, str(err))
                todo.remove(d)
    versions = env.versions()
    installed_info = _installed_full_info(env)
    driver_full_info = full_info or installed_info
    if todo and full_info is None and installed_info is not None and _sha256_file(installed_info) != full_info_sha:
        raise ScoreError(f"the VBench env's {installed_info} differs from {full_info_file}; rebuild the env", code=1)

    scoring.data.update(
        benchmark="vbench",
        label=label,
        mode_last_run=mode,
        vbench_env=str(env.root),
        vbench_cache_dir=str(vbench_weights.vbench_cache_dir()),
        versions=versions,
        detectron2=vbench_env.detectron2_record(env),
        command=command_line,
        started=_now(),
        finished=None,
        status="running",
        requested=dimensions,
        weight_hashes_checked=verify_hashes,
    )
    scoring.save()

    view = videos_view(videos_dir, bench_dir / VIEW_NAME) if todo else None
    jobs: list[Job] = []
    for d in todo:
        job = Job(d, view or videos_dir, videos_dir, view, planned_inputs[d])
        if mode == "custom_input":
            prompts = custom_prompt_map(videos_dir)
            if prompts:
                bench_dir.mkdir(parents=True, exist_ok=True)
                job.prompt_file = bench_dir / "custom_prompts.json"
                _atomic_write_json(job.prompt_file, prompts)
        if d == rule.dimension and mode != "vbench_standard":
            job.extra = {"static_filter": {"ran": False, "reason": "custom_input mode has no static filter"}}
        elif d == rule.dimension:
            if want_filter:
                try:
                    filt = _run_static_filter(env, videos_dir, bench_dir, workers[0], timeout_s, logs, staging_root)
                except ScoreError as err:
                    failures[d] = (err.code, str(err))
                    continue
                fdir = bench_dir / FILTER_NAME / rule.filtered_subdir
                job.videos_path = job.real_videos = fdir
                job.view = None
                job.extra = {"static_filter": filt}
                if filt["prompts_with_fewer_than_5_kept"]:
                    err_console.print(
                        f"[yellow]warning[/]: the static filter kept fewer than {rule.n_kept} videos for "
                        f"{len(filt['prompts_with_fewer_than_5_kept'])} prompt(s) (VBench warns the same)",
                        soft_wrap=True)
            else:
                job.extra = {"static_filter": {
                    "ran": False,
                    "reason": "--no-static-filter" if explicit_filter is False else "videos not oversampled",
                }}
        jobs.append(job)

    results = dict(done)
    _run_jobs(jobs, env=env, workers=workers, out_dir=out_dir, staging_root=staging_root, logs=logs,
              timeout_s=timeout_s, mode=mode, driver_full_info=driver_full_info, versions=versions,
              scoring=scoring, results=results, failures=failures)

    if staging_root.exists() and not any(staging_root.iterdir()):
        staging_root.rmdir()
    if view is not None:
        shutil.rmtree(view, ignore_errors=True)
    summary = write_summary(out_dir)
    finished = {d: summary[d] for d in dimensions if d in summary and d not in failures}
    scoring.data.update(finished=_now(), status="complete" if not failures else "failed: " + ", ".join(
        d for d in dimensions if d in failures))
    scoring.save()
    if failures:
        ordered = [d for d in dimensions if d in failures]
        lines = [f"{len(ordered)} of {len(dimensions)} dimension(s) failed: {', '.join(ordered)}"]
        for d in ordered:
            lines.append(f"--- {d}:\n{failures[d][1]}")
        code = MISSING_EXIT if all(failures[d][0] == MISSING_EXIT for d in ordered) else 1
        raise DimensionsFailed("\n".join(lines), code, finished)
    return finished


def _run_static_filter(env: vbench_env.VBenchEnv, videos_dir: Path, bench_dir: Path, device: str,
                       timeout_s: float | None, logs: Path, staging_root: Path) -> dict:
    """VBench's static filter on the 25 samples per prompt -> .bench/static_filter/ (reused while
    the videos are unchanged)."""
    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    target = bench_dir / FILTER_NAME
    present = {p.name for p in videos_dir.iterdir()}
    files = sorted(n for e in suite.load_vbench_suite([rule.dimension])
                   for n in suite.oversampled_video_filenames(e.prompt) if n in present)
    fingerprint = files_fingerprint(videos_dir, files)
    stamp = target / ".bench-filter.json"
    old = _read_json(stamp)
    if isinstance(old, dict) and old.get("files_sha256") == fingerprint and (target / rule.filtered_subdir).is_dir():
        err_console.print("[dim]static filter: reusing its earlier output (same videos)[/]")
        return {**_filter_record(target, videos_dir), **{k: old[k] for k in ("device", "seconds", "files_sha256")}}
    if not device.isdigit() and not device.startswith("cuda"):
        err_console.print(
            "[bold yellow]note[/]: VBench's static_filter hard-codes CUDA (vbench/cli/static_filter.py: "
            f"DEVICE = 'cuda'); on this {device} machine the harness runs the same code with its device "
            "set to cpu. Slow for 1,875 videos; on a GPU machine it runs as VBench wrote it.", soft_wrap=True)
    staging = staging_root / FILTER_NAME
    with err_console.status("VBench static_filter ..."):
        run = run_driver(env, args=["--action", "static_filter", "--videos-dir", str(videos_dir)],
                         label="static_filter", staging=staging, device=device,
                         log_path=logs / "static_filter.log", timeout_s=timeout_s)
    log = logs / "static_filter.log"
    if run.timed_out:
        raise ScoreError(f"VBench's static filter timed out after {timeout_s:.0f}s (--timeout); log: {log}", code=1)
    if run.rc == MISSING_EXIT and run.missing_line:
        raise ScoreError(f"static filter: {run.missing_line}\nlog: {log}", code=MISSING_EXIT)
    if run.rc != 0:
        raise ScoreError(f"VBench's static filter failed (exit {run.rc}). Last lines of {log}:\n"
                         f"{vbench_env.tail(log, 25)}", code=1)
    record = _filter_record(staging, videos_dir)
    if not (staging / rule.filtered_subdir).is_dir():
        (staging / rule.filtered_subdir).mkdir()
    _atomic_write_json(staging / ".bench-filter.json",
                       {"files_sha256": fingerprint, "device": device, "seconds": round(run.seconds, 1)})
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    err_console.print(f"[green]✓[/] static filter kept {record['videos_kept']} videos "
                      f"({len(record['kept_per_prompt'])} prompts, {run.seconds:.0f}s)")
    return {**record, "device": device, "seconds": round(run.seconds, 1), "files_sha256": fingerprint}


def _run_jobs(jobs: list[Job], *, env, workers: list[str], out_dir: Path, staging_root: Path, logs: Path,
              timeout_s: float | None, mode: str, driver_full_info: Path | None, versions: dict,
              scoring: Scoring, results: dict, failures: dict) -> None:
    """Each worker (one per device) takes the next job until none is left."""
    pending: "queue.Queue[Job]" = queue.Queue()
    for j in jobs:
        pending.put(j)
    print_lock = threading.Lock()
    total = len(jobs)
    counter = iter(range(1, total + 1))

    def run_one(job: Job, device: str) -> None:
        d = job.dimension
        with print_lock:
            i = next(counter)
            err_console.print(f"VBench {d} ({i}/{total}) on {device} ...", soft_wrap=True)
        args = ["--videos-dir", str(job.videos_path), "--dimension", d, "--name", d, "--mode", mode]
        if driver_full_info is not None:
            args += ["--full-info", str(driver_full_info)]
        if job.prompt_file is not None:
            args += ["--prompt-file", str(job.prompt_file)]
        log = logs / f"{d}.log"
        record = {"status": "running", "inputs": job.inputs, "device": device, "started": _now(),
                  "log": str(log), "scored_videos_dir": str(job.real_videos), **job.extra}
        scoring.set_dimension(d, record)
        run = run_driver(env, args=args, label=d, staging=staging_root / d, device=device,
                         log_path=log, timeout_s=timeout_s)
        try:
            if run.timed_out:
                raise ScoreError(f"VBench {d} timed out after {timeout_s:.0f}s (--timeout); log: {log}", code=1)
            if run.rc == MISSING_EXIT and run.missing_line:
                raise ScoreError(f"{d}: {run.missing_line}\nlog: {log}", code=MISSING_EXIT)
            if run.rc < 0:
                why = " (SIGKILL: often the out-of-memory killer)" if run.rc == -signal.SIGKILL else ""
                raise ScoreError(f"VBench was killed by signal {-run.rc} on {d}{why}; log: {log}", code=1)
            if run.rc != 0:
                raise ScoreError(
                    f"VBench failed on {d} (exit {run.rc}). Last lines of {log}:\n{vbench_env.tail(log, 25)}",
                    code=1,
                )
            value = publish_dimension(staging_root / d, out_dir, d, job.view, job.real_videos)
        except ScoreError as err:
            failures[d] = (err.code, str(err))
            scoring.set_dimension(d, {**record, "status": "failed", "error": str(err).splitlines()[0],
                                      "seconds": round(run.seconds, 1), "finished": _now()})
            with print_lock:
                err_console.print(f"[red]✗[/] {d} failed ({run.seconds:.0f}s); continuing", soft_wrap=True)
            return
        results[d] = value
        scoring.set_dimension(d, {**record, "status": "complete", "seconds": round(run.seconds, 1),
                                  "finished": _now(), "aggregate": value,
                                  "vbench_version": versions.get("vbench"), "torch": versions.get("torch")})
        with print_lock:
            write_summary(out_dir)
            err_console.print(f"[green]✓[/] {d} = {value:.4f}  ({run.seconds:.0f}s on {device})")

    errors: list[BaseException] = []

    def worker(device: str) -> None:
        while True:
            try:
                job = pending.get_nowait()
            except queue.Empty:
                return
            try:
                run_one(job, device)
            except BaseException as err:  # noqa: BLE001  re-raised in the main thread
                errors.append(err)
                return

    if len(workers) == 1:
        worker(workers[0])
    else:
        threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in workers]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.5)
        except BaseException:
            # Ctrl-C reaches only this thread; the workers' VBench processes have sessions of their own.
            while not pending.empty():
                pending.get_nowait()
            with _ACTIVE_LOCK:
                running = list(_ACTIVE)
            for proc in running:
                _kill_group(proc)
            raise
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------- CLI


def vbench_command(
    run: Optional[Path] = results.run_option(),
    videos: Optional[str] = results.videos_option(),
    videos_dir: Optional[Path] = results.videos_dir_option(),
    dimension: Optional[list[str]] = typer.Option(None, "--dimension", "-d", help="VBench dimension; repeatable (default: all 16; in custom_input mode the 10 VBench supports there)."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cuda:N or cpu (default: cuda if available)."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Score different dimensions at once, one per device: CUDA indices (0,1,...) or cpu entries."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN/scores/<label>-vbench/)."),
    force: bool = typer.Option(False, "--force", help="Recompute dimensions that already have a complete, current result."),
    static_filter: Optional[bool] = typer.Option(
        None, "--static-filter/--no-static-filter",
        help="Run VBench's static_filter on the temporal_flickering videos and score the static ones it keeps "
             "(default: on when 25-per-prompt videos, -5..-24, are present). Needs RAFT weights; VBench's filter "
             "is written for CUDA (on CPU the harness runs it with the device set to cpu)."),
    mode: str = typer.Option("vbench_standard", "--mode", help="vbench_standard (VBench's prompt suite) or custom_input (any prompts, e.g. from `bench generate --prompt-file`; prompts from its manifest, else from the file names)."),
    full_info: Optional[Path] = typer.Option(None, "--full-info", help="VBench's prompt-suite file to use (default: the one inside the vbench package)."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", help="Seconds one VBench subprocess may run before it is stopped (0: no limit)."),
    export_zip_path: Optional[Path] = typer.Option(None, "--export-zip", help="Also pack VBench's result files (only those) into this zip, the submission layout."),
    skip_hash_check: bool = typer.Option(False, "--skip-hash-check", help="Accept weight files whose sha256 differs from the published one (your own conversions); the presence and truncated-archive checks stay."),
) -> None:
    """Score videos with the official VBench package (its own env, created on first use)."""
    summary: dict[str, float] = {}
    label, out_dir = "", None
    try:
        if not math.isfinite(timeout) or timeout < 0:
            raise ScoreError(f"--timeout {timeout}: must be a finite number of seconds >= 0")
        vdir, label = resolve_videos(run, videos, videos_dir)
        dims = resolve_dimensions(dimension, mode)
        out_dir = (out or default_out_dir(vdir, label)).resolve()
        try:
            summary = score(vdir, label, out_dir, dims, device, force, " ".join(["bench", *sys.argv[1:]]),
                            static_filter=static_filter, mode=mode, full_info=full_info,
                            timeout_s=timeout or None, devices=devices, verify_hashes=not skip_hash_check)
        finally:
            if export_zip_path is not None and out_dir is not None and any(out_dir.glob("*_eval_results.json")):
                names = export_zip(out_dir, export_zip_path.resolve())
                err_console.print(f"submission zip: {export_zip_path} ({len(names)} result files)")
    except DimensionsFailed as err:
        _print_summary(err.summary, label, out_dir)
        raise  # the message and exit code: bench's one handler (bench/console.py)
    except KeyboardInterrupt:
        raise Interrupted("interrupted; rerun the same command to resume (finished dimensions are kept)") from None
    _print_summary(summary, label, out_dir)


def _print_summary(summary: dict[str, float], label: str, out_dir: Path | None) -> None:
    if not summary:
        return
    table = Table(title=f"VBench — {label}", show_header=True)
    table.add_column("dimension")
    table.add_column("score", justify="right")
    for d, v in summary.items():
        table.add_row(d, f"{v:.4f}")
    out_console.print(table)
    out_console.print(f"results: {out_dir}")
