"""Running VBench's driver in its own environment: one dimension per child process, its environment, lock, timeout and kill; the record of what was scored with what."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rich.markup import escape

from bench.scoring.results import ScoreError
from bench.vbench import env as vbench_env
from bench.vbench import weights as vbench_weights
from bench.vbench import suite
from bench.vbench.score.inputs import BENCH_DIR, MISSING_EXIT, err_console, files_fingerprint
from bench.vbench.score.publish import _atomic_write_json, _read_json


DRIVER = Path(__file__).resolve().parent.parent / "driver.py"  # bench/vbench/driver.py
LOCK_NAME = "lock"
# Files earlier versions of the harness wrote beside VBench's; they break cal_final_score.py.
LEGACY_TOP_LEVEL = ("summary.json", "bench_scoring.json", "vbench.log")
TIMEOUT_EXIT = 124
# torch >= 2.6 loads with weights_only=True; vbench 0.1.5's checkpoints need the old default
# (see bench/vbench/driver.py). Set for every VBench subprocess and recorded per dimension.
CHILD_TORCH_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


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


