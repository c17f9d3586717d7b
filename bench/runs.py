"""Run directories: every number in a report traces back to one of these.

`run.json` records the resolved config, seeds, package versions, git commit and command
line; `student/adapter.safetensors` is the final student (LoRA + w projection), which
`load_run_student` merges into the teacher's UNet for generation.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from t2v_turbo_core.safe_io import atomic_write_json
from bench.errors import BenchError
from bench.config import TrainConfig, config_from_dict

RUNS_DIR = Path("runs")
PACKAGES = ("torch", "torchvision", "diffusers", "peft", "transformers", "open_clip_torch", "accelerate", "safetensors", "numpy", "av", "decord")


class RunError(BenchError, RuntimeError):
    """Not a run directory, an unreadable run.json, no student (exit 2)."""


def package_versions(names: tuple[str, ...] = PACKAGES, with_self: bool = True) -> dict[str, str]:
    """Python's and each named package's version (the provenance every record carries);
    with_self: this package's own ("source" when run from a checkout)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    if with_self:
        try:
            out["t2v-turbo-bench"] = metadata.version("t2v-turbo-bench")
        except metadata.PackageNotFoundError:
            out["t2v-turbo-bench"] = "source"
    return out


def git_state(repo: Path | None = None) -> dict[str, Any]:
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": commit or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def write_json_atomic(path: Path, data: Any) -> None:
    # Strict JSON: a NaN here is a bug upstream, not something to write as a non-JSON token.
    atomic_write_json(path, data, indent=2, sort_keys=True, default=str)


def run_record(kind: str, config: dict, seeds: dict, extra: dict | None = None) -> dict:
    return {
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "config": config,
        "seeds": seeds,
        "versions": package_versions(),
        "git": git_state(),
        "host": {"platform": platform.platform(), "cuda": torch.cuda.is_available(), "threads": torch.get_num_threads()},
        **(extra or {}),
    }


def read_run(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise RunError(f"not a run directory (no run.json): {Path(run_dir)}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: unreadable ({err})") from err


def run_config(run_dir: str | Path) -> TrainConfig:
    return config_from_dict(read_run(run_dir)["config"])


def load_teacher(cfg: TrainConfig, device: str | torch.device = "cpu"):
    """The teacher bundle a config names: the shipped tiny zoo, or real checkpoints."""
    if cfg.teacher == "tiny":
        from bench.tinyworld.zoo import load_tiny_teacher

        return load_tiny_teacher(cfg.weights.get("tiny_zoo"), device=device)
    from bench.components import load_real_teacher

    return load_real_teacher(cfg, device=device)


def student_adapter_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "student" / "adapter.safetensors"


def load_run_student(run_dir: str | Path, device: str | torch.device = "cpu", merge: bool = True):
    """(teacher bundle, student UNet, config) of a finished training run."""
    from t2v_turbo_core.lora import load_student, merge_lora

    cfg = run_config(run_dir)
    path = student_adapter_path(run_dir)
    if not path.is_file():
        raise RunError(f"{run_dir}: no final student at {path} (is training finished? resume with `bench train --resume`)")
    teacher = load_teacher(cfg, device=device)
    from bench.v2 import prepare_student, student_lora

    student = teacher.make_student(student_lora(cfg))  # a fully fine-tuned v2 run: the whole UNet

    prepare_student(cfg, student)  # a v2 student has the motion-condition input (no-op for v1)
    load_student(student, path)
    if merge:
        merge_lora(student)
    return teacher, student.eval().requires_grad_(False), cfg
