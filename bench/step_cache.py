"""Training steps shared by the variants of an ablation: each step's batch, text and teacher pass.

Every student of `bench ablate` (one training seed) trains on the same tiny-world batches:
`TinyWorldBatches` is a pure function of (seed, step, rank), and the step's draws (t_{n+k},
noise, w) come from a generator seeded by (seed, step, rank) alone. The rendered and
VAE-encoded batch, its text embedding and the frozen teacher's [cond; uncond] pass at
z_{t_{n+k}} (`TeacherRecord`) are therefore the same for all five variants; only the student's
passes differ. The first job to reach a step writes those to disk; the others read them
instead of computing them again. The values read are the very tensors that job computed, by
the same code in the same settings (the key below), so every variant trains bit for bit as
it would alone; the distiller also re-checks z_{t_{n+k}}, t_{n+k} and the text of each record
against its own draws before it uses the teacher's pass (a mismatch is recomputed).

One file per step (`step-NNNNNN.pt`), written whole to a temp name and renamed, so jobs that
run at once never see half a record; two jobs writing the same step write the same bytes.
A record that cannot be read is recomputed, never fatal.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from t2v_turbo_core.distillation import TeacherRecord
from t2v_turbo_core.safe_io import WeightsFileError, atomic_write, load_torch

# Bumped whenever what a record holds, or how it is computed, changes.
FORMAT = 1
# The code whose output a record is: the world's batches, the VAE encoding, the step's draws and
# the teacher's pass. Part of the key, so an edited checkout never reads an older one's records.
_SOURCES = ("bench/tinyworld/world.py", "bench/tinyworld/render.py", "bench/tinyworld/suite.py", "bench/train.py",
            "t2v_turbo_core/distillation.py", "t2v_turbo_core/models.py", "t2v_turbo_core/schedule.py")


def _tensor_digest(h: "hashlib._Hash", module: Any) -> None:
    state = module.state_dict() if hasattr(module, "state_dict") else {}
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes())


def cache_key(cfg, teacher, uncond: torch.Tensor, rank: int, world: int, device: Any) -> str:
    """What the shared records depend on: the teacher's weights (UNet, VAE, text encoder), the data
    seed and batch geometry, the numerics (threads, dtype, device, torch) and the code."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    h.update(json.dumps({
        "format": FORMAT, "teacher": cfg.teacher, "seed": cfg.seed, "rank": rank, "world": world, "batch_size": cfg.batch_size,
        "mixed_precision": cfg.mixed_precision, "unet_kwargs": repr(sorted(teacher.unet_kwargs.items())),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(torch.device(device).type),
    }, sort_keys=True).encode())
    for rel in _SOURCES:
        path = root / rel
        h.update(rel.encode())
        h.update(path.read_bytes() if path.is_file() else b"")
    for module in (teacher.unet, getattr(teacher.vae, "vae", teacher.vae), getattr(teacher.text_encoder, "text_model", None)):
        if module is not None:
            _tensor_digest(h, module)
    h.update(uncond.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


class SharedSteps:
    """The records of one key under `root/<key>/`; `load(step)` / `store(step, ...)`."""

    def __init__(self, root: str | Path, key: str):
        self.dir = Path(root) / key
        self.hits = 0  # steps read from disk (the batch, and the teacher's pass where it was stored)

    def _path(self, step: int) -> Path:
        return self.dir / f"step-{step:06d}.pt"

    def load(self, step: int, device: Any) -> tuple[torch.Tensor, list[str], torch.Tensor, TeacherRecord | None] | None:
        """(latents, prompts, text embedding, teacher record or None), or None: compute the step."""
        path = self._path(step)
        if not path.is_file():
            return None
        try:
            rec = load_torch(path, map_location="cpu")
            latents, prompts, text = rec["latents"].to(device), list(rec["prompts"]), rec["text"].to(device)
            teacher = None
            if "eps" in rec:
                teacher = TeacherRecord(rec["z_start"].to(device), rec["t_start"].to(device), text, rec["eps"].to(device))
        except (WeightsFileError, KeyError, TypeError, AttributeError):
            return None  # unreadable: this job computes the step itself (and rewrites the file)
        self.hits += 1
        return latents, prompts, text, teacher

    def store(self, step: int, latents: torch.Tensor, prompts: list[str], text: torch.Tensor,
              teacher: TeacherRecord | None) -> None:
        rec: dict[str, Any] = {"latents": latents.detach().cpu(), "prompts": list(prompts), "text": text.detach().cpu()}
        if teacher is not None:
            rec.update(z_start=teacher.z_start.detach().cpu(), t_start=teacher.t_start.detach().cpu(),
                       eps=teacher.eps.detach().cpu())
        atomic_write(self._path(step), lambda tmp: torch.save(rec, tmp))
