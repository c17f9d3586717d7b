"""What every stage of `bench zoo build` shares: the zoo's manifest, the training loop (resumable, atomic checkpoints, EMA), the export of a finished stage."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from t2v_turbo_core.safe_io import atomic_write, atomic_write_json
from bench.errors import RUN_FAILED, BenchError
from bench.tinyworld import models as M
from bench.tinyworld.suite import held_out_prompts


DEFAULT_ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"  # bench/tinyworld/zoo
DEFAULT_WORK_DIR = Path("runs") / "zoo-build"


class StageError(BenchError, RuntimeError):
    """A zoo build stage failed its gate (exit 1)."""

    code = RUN_FAILED


def batch_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, step])


def atomic_torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_manifest(zoo_dir: Path) -> dict:
    path = zoo_dir / "zoo.json"
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def write_manifest(zoo_dir: Path, manifest: dict) -> None:
    from bench.validate import json_safe

    # Strict JSON: a diverged stage's NaN loss is recorded as null, not as a non-JSON token.
    atomic_write_json(zoo_dir / "zoo.json", json_safe(manifest), indent=2, sort_keys=True)


def update_manifest(zoo_dir: Path, stage: str, entry: dict) -> None:
    """Read-modify-write of zoo.json under a file lock: stages may run in parallel processes."""
    import fcntl

    zoo_dir.mkdir(parents=True, exist_ok=True)
    with open(zoo_dir / ".zoo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = read_manifest(zoo_dir)
        manifest["stages"][stage] = entry
        write_manifest(zoo_dir, manifest)


class EMA:
    """Exponential moving average of a module's floating-point state (exported weights)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        # Warm-up: a short average at first, so early exports are not dominated by init.
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)

    def copy_to(self, module: nn.Module) -> None:
        state = module.state_dict()
        state.update({k: v.clone() for k, v in self.shadow.items()})
        module.load_state_dict(state)


@dataclass
class Context:
    zoo_dir: Path
    work_dir: Path
    progress: object = None  # rich Progress, or None
    log: Callable[[str], None] = print
    cache: dict = field(default_factory=dict)

    @property
    def held_out(self) -> frozenset[str]:
        return held_out_prompts()

    def clip_tokenizer(self):
        if "clip_tok" not in self.cache:
            self.cache["clip_tok"] = M.load_clip_tokenizer(self.zoo_dir)
        return self.cache["clip_tok"]

    def bert_tokenizer(self):
        if "bert_tok" not in self.cache:
            self.cache["bert_tok"] = M.load_bert_tokenizer(self.zoo_dir)
        return self.cache["bert_tok"]

    def vae(self):
        if "vae" not in self.cache:
            vae = M.load_module(M.make_vae(), self.zoo_dir / "vae.safetensors")
            self.cache["vae"] = vae
        return self.cache["vae"]


def lr_factor(step: int, total_steps: int, warmup: int, decay_from: int | None = None) -> float:
    """Multiplier of the base learning rate at `step` (0-based)."""
    f = min(1.0, (step + 1) / warmup)
    if decay_from is not None and step >= decay_from:
        f *= 0.5 * (1.0 + math.cos(math.pi * (step - decay_from) / max(1, total_steps - decay_from)))
    return f


def train_loop(
    ctx: Context,
    name: str,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], dict[str, torch.Tensor]],
    total_steps: int,
    lr: float,
    warmup: int = 100,
    ckpt_every: int = 200,
    ema_decay: float | None = None,
    clip_grad: float = 1.0,
    on_checkpoint: Callable[[int], None] | None = None,
    decay_from: int | None = None,
    lr_at: Callable[[int], float] | None = None,
) -> dict:
    """Generic resumable loop: step_fn(step) returns {"loss": ..., other logs}.

    The learning rate warms up linearly, stays constant, and from `decay_from` (if given)
    follows a cosine down to zero at `total_steps`; `lr_at(step)` replaces that schedule.
    """
    stage_dir = ctx.work_dir / name
    stage_dir.mkdir(parents=True, exist_ok=True)
    state_path = stage_dir / "state.pt"
    emas = {k: EMA(m, ema_decay) for k, m in modules.items()} if ema_decay else {}
    step, elapsed = 0, 0.0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        optimizer.load_state_dict(state["optimizer"])
        for k, e in emas.items():
            e.shadow = state["ema"][k]
        step, elapsed = int(state["step"]), float(state["elapsed"])
        torch.set_rng_state(state["torch_rng"])
        ctx.log(f"[{name}] resuming at step {step}/{total_steps}")
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    log_path = stage_dir / "log.csv"
    task = ctx.progress.add_task(name, total=total_steps, completed=step, info="") if ctx.progress else None
    t0 = time.time() - elapsed

    def save():
        atomic_torch_save(
            {
                "step": step,
                "elapsed": time.time() - t0,
                "modules": {k: m.state_dict() for k, m in modules.items()},
                "optimizer": optimizer.state_dict(),
                "ema": {k: e.shadow for k, e in emas.items()},
                "torch_rng": torch.get_rng_state(),
            },
            state_path,
        )

    for m in modules.values():
        m.train()
    running: dict[str, float] = {}
    while step < total_steps:
        for group in optimizer.param_groups:
            base = lr_at(step) if lr_at is not None else lr * lr_factor(step, total_steps, warmup, decay_from)
            group["lr"] = base * group.get("lr_scale", 1.0)
        logs = step_fn(step)
        loss = logs["loss"]
        if not torch.isfinite(loss):
            raise StageError(f"[{name}] non-finite loss at step {step}; last checkpoint kept at {state_path}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        optimizer.step()
        step += 1
        for k, e in emas.items():
            e.update(modules[k], step)
        for k, v in logs.items():
            fv = float(v.detach()) if torch.is_tensor(v) else float(v)
            running[k] = 0.98 * running.get(k, fv) + 0.02 * fv
        if task is not None:
            ctx.progress.update(task, completed=step, info=" ".join(f"{k}={v:.4f}" for k, v in running.items()))
        if step % 20 == 0 or step == total_steps:
            new = not log_path.exists()
            with open(log_path, "a", newline="") as fh:
                w = csv.writer(fh)
                if new:
                    w.writerow(["step", "seconds", *running.keys()])
                w.writerow([step, f"{time.time() - t0:.1f}", *(f"{v:.6f}" for v in running.values())])
        if step % ckpt_every == 0 or step == total_steps:
            save()
            if on_checkpoint is not None:
                on_checkpoint(step)
    if not running and log_path.exists():
        # Resumed at its end (a finished stage re-exported): the final losses are the log's last row.
        with open(log_path, newline="") as fh:
            last = list(csv.DictReader(fh))[-1:]
        running = {k: float(v) for row in last for k, v in row.items() if k not in ("step", "seconds")}
    for k, e in emas.items():
        e.copy_to(modules[k])
    for m in modules.values():
        m.eval()
    return {"steps": total_steps, "seconds": round(time.time() - t0, 1), "final": {k: round(v, 5) for k, v in running.items()}}


def export(ctx: Context, stage: str, files: dict[str, nn.Module], info: dict) -> None:
    """Write fp16 safetensors (halves the shipped size; loaded back as fp32) + manifest."""
    for fname, module in files.items():
        from safetensors.torch import save_file

        half = {k: (v.half() if v.dtype.is_floating_point else v) for k, v in module.state_dict().items()}
        atomic_write(ctx.zoo_dir / fname,
                     lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in half.items()}, str(tmp)))
    update_manifest(ctx.zoo_dir, stage, {**info, "files": sorted(files), "threads": torch.get_num_threads()})


def stage_done(ctx: Context, stage: str) -> bool:
    entry = read_manifest(ctx.zoo_dir)["stages"].get(stage)
    return bool(entry) and all((ctx.zoo_dir / f).is_file() for f in entry.get("files", []))


