"""The separate virtualenv that runs the official `vbench` package.

vbench 0.1.5 pins transformers==4.33.2, timm<=1.0.12 and numpy<2, which clash with the
main environment, so it gets its own venv (default `<repo>/.venv-vbench`, or
`$BENCH_VBENCH_ENV`), created on first use with the same torch/torchvision wheels as the
main env and the versions in `bench/vbench/constraints.txt`.

A stamp file written last marks a complete install; it records what was asked for, so an
interrupted or failed install (no stamp) or a changed constraints file (other stamp) is
wiped and redone. An exclusive lock keeps two processes from installing at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from t2v_turbo_core.safe_io import atomic_write_text
from bench.errors import RUN_FAILED, BenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = Path(__file__).with_name("constraints.txt")
DEFAULT_ENV_DIR = REPO_ROOT / ".venv-vbench"
ENV_VAR = "BENCH_VBENCH_ENV"

VBENCH_VERSION = "0.1.5"
REQUIREMENTS = (
    "torch==2.14.1",
    "torchvision==0.29.1",
    f"vbench=={VBENCH_VERSION}",
    "numpy<2",
    # openai-clip needs pkg_resources, gone from setuptools 81 on (see the constraints).
    "setuptools<81",
)
# Imported once after installing: the modules temporal_flickering and the CLIP-based
# dimensions need, so a broken wheel shows up at install time, not mid-evaluation.
SMOKE_IMPORTS = ("numpy", "torch", "torchvision", "cv2", "decord", "clip", "vbench")

STAMP_NAME = ".bench-vbench-complete.json"
IN_PROGRESS_NAME = ".bench-vbench-installing"
INSTALL_LOG_NAME = "bench-install.log"

OnLine = Callable[[str], None]


class VBenchEnvError(BenchError, RuntimeError):
    """The VBench environment could not be created; the message says why (exit 1)."""

    code = RUN_FAILED


@dataclass(frozen=True)
class VBenchEnv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def stamp_path(self) -> Path:
        return self.root / STAMP_NAME

    @property
    def install_log(self) -> Path:
        return self.root / INSTALL_LOG_NAME

    def stamp(self) -> dict | None:
        try:
            return json.loads(self.stamp_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def is_ready(self) -> bool:
        stamp = self.stamp()
        if stamp is None or not os.access(self.python, os.X_OK):
            return False
        want = _wanted()
        return all(stamp.get(k) == v for k, v in want.items())

    def versions(self) -> dict[str, str]:
        return dict((self.stamp() or {}).get("versions", {}))


def env_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser().resolve() if override else DEFAULT_ENV_DIR


def current_env() -> VBenchEnv:
    return VBenchEnv(env_dir())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wanted() -> dict:
    """What a complete install must have been made from (compared with the stamp)."""
    return {
        "requirements": list(REQUIREMENTS),
        "constraints_sha256": _sha256(CONSTRAINTS),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }


_atomic_write_text = atomic_write_text  # (the one atomic writer: t2v_turbo_core/safe_io.py)


@contextmanager
def _install_lock(root: Path, on_line: OnLine) -> Iterator[None]:
    # The lock lives in the temp dir, keyed by the env's path: the env folder itself is
    # deleted on a redo, and a lock file beside it would litter the repository.
    key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"bench-vbench-env-{key}.lock"
    with open(lock_path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_line(f"waiting for another process installing {root} ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _remove_unfinished(root: Path) -> None:
    """Delete a previous, unfinished env, but only if it is recognisably one of ours."""
    if not root.exists():
        return
    ours = (root / IN_PROGRESS_NAME).exists() or (root / "pyvenv.cfg").exists()
    if not ours and any(root.iterdir()):
        raise VBenchEnvError(
            f"{root} exists and is not a virtualenv; refusing to replace it. "
            f"Remove it or point {ENV_VAR} elsewhere."
        )
    shutil.rmtree(root)


def _run_logged(cmd: list[str], log, on_line: OnLine, env: dict | None = None) -> int:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        # pip's per-index warnings about this machine's absent local indexes are noise.
        if not line.startswith("WARNING: Location"):
            on_line(line.rstrip())
    return proc.wait()


def ensure_env(root: Path | None = None, on_line: OnLine | None = None) -> VBenchEnv:
    """Return a ready VBench env, creating it first if needed (minutes, once).

    `on_line` receives progress lines (stage names and pip's output) for the CLI to show.
    """
    say = on_line or (lambda _line: None)
    env = VBenchEnv(root or env_dir())
    if env.is_ready():
        return env
    with _install_lock(env.root, say):
        if env.is_ready():  # another process finished it while we waited
            return env
        _install(env, say)
    return env


def _install(env: VBenchEnv, say: OnLine) -> None:
    started = time.time()
    if env.root.exists():
        say(f"removing the unfinished or outdated VBench env at {env.root}")
    _remove_unfinished(env.root)
    env.root.mkdir(parents=True)
    (env.root / IN_PROGRESS_NAME).write_text("install started\n", encoding="utf-8")

    child_env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    child_env.pop("PYTHONPATH", None)  # the main env's paths must not leak into the new one
    with open(env.install_log, "a", encoding="utf-8") as log:
        steps = [
            ("virtualenv", [sys.executable, "-m", "venv", str(env.root)]),
            (
                "pip install",
                [str(env.python), "-m", "pip", "install", "--progress-bar", "off",
                 "-c", str(CONSTRAINTS), *REQUIREMENTS],
            ),
            (
                "import check",
                [str(env.python), "-c",
                 "import importlib, importlib.metadata as m, json;"
                 f"[importlib.import_module(n) for n in {list(SMOKE_IMPORTS)!r}];"
                 "import numpy; assert numpy.__version__.split('.')[0] == '1', numpy.__version__;"
                 "print('BENCH_VERSIONS ' + json.dumps({d: m.version(d) for d in "
                 "('vbench', 'torch', 'torchvision', 'numpy', 'transformers', 'timm', "
                 "'opencv-python', 'decord', 'setuptools')}))"],
            ),
        ]
        versions: dict[str, str] = {}

        def collect(line: str) -> None:
            if line.startswith("BENCH_VERSIONS "):
                versions.update(json.loads(line.split(" ", 1)[1]))
            else:
                say(line)

        for name, cmd in steps:
            say(f"[{name}]")
            rc = _run_logged(cmd, log, collect, env=child_env)
            if rc != 0:
                raise VBenchEnvError(
                    f"VBench env install failed at step '{name}' (exit {rc}); "
                    f"log: {env.install_log}\n{tail(env.install_log)}"
                )

    stamp = dict(_wanted(), versions=versions, seconds=round(time.time() - started, 1),
                 finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _atomic_write_text(env.stamp_path, json.dumps(stamp, indent=2) + "\n")
    (env.root / IN_PROGRESS_NAME).unlink(missing_ok=True)
    say(f"VBench env ready in {stamp['seconds']:.0f}s")


def tail(path: Path, n: int = 30) -> str:
    """The last `n` meaningful lines of a log file (pip's index warnings left out)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    kept = [line for line in lines if not line.startswith("WARNING: Location")]
    return "\n".join(kept[-n:])


# --------------------------------------------------------------------------- detectron2
# GRiT (object_class, multiple_objects, color, spatial_relationship) imports detectron2,
# which vbench does not declare and which is not on PyPI under its own name. A published
# fork's wheel carries the same pure-Python package: sal-detectron2 0.7.2 (Apache-2.0, a
# copy of facebookresearch/detectron2 v0.6 + fixes) ships `detectron2/` plus a compiled
# `_C` built for CPython 3.10. GRiT's inference path (ViT backbone, CenterNet proposals
# without deformable convs, torchvision's ROIAlign/NMS) needs none of `_C`: detectron2
# falls back to pure-Python code when `_C` cannot be imported. So the harness downloads
# that wheel with pip, checks its hash, and unpacks only the Python sources (and the
# model-zoo configs) into the VBench env; `_C` is left out.
DETECTRON2_DIST = "sal-detectron2"
DETECTRON2_VERSION = "0.7.2"
DETECTRON2_WHEEL = f"sal_detectron2-{DETECTRON2_VERSION}-cp310-none-any.whl"
DETECTRON2_WHEEL_SHA256 = "491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
DETECTRON2_MARKER = ".bench-detectron2.json"
# What GRiT imports, checked after unpacking (the four dimensions' modules themselves).
DETECTRON2_SMOKE = ("detectron2", "detectron2.config", "detectron2.modeling", "detectron2.engine.defaults",
                    "vbench.third_party.grit_src.image_dense_captions", "vbench.object_class")
DETECTRON2_MANUAL = (
    "manual route: build detectron2 from source into the VBench env "
    "(`<env>/bin/pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'`, "
    "needs GitHub access and a C++ compiler); the harness then leaves it alone"
)


def site_packages(env: VBenchEnv) -> Path:
    found = sorted(env.root.glob("lib/python*/site-packages"))
    if not found:
        raise VBenchEnvError(f"{env.root} has no lib/python*/site-packages")
    return found[0]


def detectron2_record(env: VBenchEnv) -> dict | None:
    """How detectron2 got into the env: our marker, 'installed by hand', or None (absent)."""
    try:
        site = site_packages(env)
    except VBenchEnvError:
        return None
    try:
        return json.loads((site / DETECTRON2_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if (site / "detectron2" / "__init__.py").is_file():
        return {"source": "installed by hand (not by bench)", "path": str(site / "detectron2")}
    return None


def ensure_detectron2(env: VBenchEnv, on_line: OnLine | None = None) -> dict:
    """detectron2's Python sources in the env (from the sal-detectron2 wheel), once; returns the record."""
    say = on_line or (lambda _line: None)
    record = detectron2_record(env)
    if record is not None:
        return record
    with _install_lock(env.root, say):
        record = detectron2_record(env)
        if record is not None:
            return record
        return _install_detectron2(env, say)


def _install_detectron2(env: VBenchEnv, say: OnLine) -> dict:
    import zipfile

    started = time.time()
    site = site_packages(env)
    say(f"[detectron2] fetching {DETECTRON2_DIST}=={DETECTRON2_VERSION} (pure-Python sources for GRiT)")
    child_env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    child_env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory(prefix="bench-d2-") as tmp, open(env.install_log, "a", encoding="utf-8") as log:
        # The wheel is tagged cp310: ask pip for that tag explicitly; it is never installed as a
        # distribution (its compiled part would not load in this interpreter anyway).
        cmd = [str(env.python), "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--python-version", "3.10", "--platform", "linux_x86_64",
               f"{DETECTRON2_DIST}=={DETECTRON2_VERSION}", "-d", tmp]
        rc = _run_logged(cmd, log, lambda _line: None, env=child_env)
        wheel = Path(tmp) / DETECTRON2_WHEEL
        if rc != 0 or not wheel.is_file():
            raise VBenchEnvError(
                f"could not download {DETECTRON2_DIST}=={DETECTRON2_VERSION} from the package index "
                f"(exit {rc}; log: {env.install_log}); {DETECTRON2_MANUAL}"
            )
        digest = _sha256(wheel)
        if digest != DETECTRON2_WHEEL_SHA256:
            raise VBenchEnvError(
                f"{wheel.name} has sha256 {digest}, expected {DETECTRON2_WHEEL_SHA256}; not unpacked. "
                f"{DETECTRON2_MANUAL}"
            )
        staging = site / f".detectron2.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        kept, dropped = 0, []
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                name = info.filename
                if not name.startswith("detectron2/") or name.endswith("/"):
                    continue
                if name.rsplit("/", 1)[-1].startswith("_C") and name.endswith(".so"):
                    dropped.append(name)
                    continue
                dest = staging / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(zf.read(info))
                kept += 1
        os.replace(staging / "detectron2", site / "detectron2")
        shutil.rmtree(staging, ignore_errors=True)
    say("[detectron2] import check")
    check = [str(env.python), "-c", f"import importlib; [importlib.import_module(n) for n in {list(DETECTRON2_SMOKE)!r}]"]
    with open(env.install_log, "a", encoding="utf-8") as log:
        rc = _run_logged(check, log, lambda _line: None, env=child_env)
    if rc != 0:
        shutil.rmtree(site / "detectron2", ignore_errors=True)
        raise VBenchEnvError(
            f"detectron2 from {DETECTRON2_DIST} {DETECTRON2_VERSION} did not import in the VBench env "
            f"(log: {env.install_log}):\n{tail(env.install_log, 15)}\n{DETECTRON2_MANUAL}"
        )
    record = {
        "source": f"{DETECTRON2_DIST}=={DETECTRON2_VERSION} (PyPI), Python sources only",
        "wheel": DETECTRON2_WHEEL,
        "wheel_sha256": DETECTRON2_WHEEL_SHA256,
        "files": kept,
        "dropped": dropped,
        "seconds": round(time.time() - started, 1),
    }
    _atomic_write_text(site / DETECTRON2_MARKER, json.dumps(record, indent=2) + "\n")
    say(f"[detectron2] ready ({kept} files; {', '.join(dropped) or 'nothing'} left out)")
    return record
