"""T2V-Turbo-v2's motion-condition input: the student also sees the motion-guidance scale.

The released v2 UNet (LVDM `UNetModel` with `motion_cond_proj_dim=256`) embeds the motion-
guidance scale m with the same sinusoidal embedding as the CFG scale w (x1000, 256-d) and
combines the two projections before they are added to the timestep embedding:

    e = combine_proj( concat[ time_cond_proj(emb(w)), motion_cond_proj(emb(m)) ] )
    time_embed( timestep_embedding(t) + e )

with `motion_cond_proj`: Linear(256 -> C, no bias) and `combine_proj`: Linear(2C -> C, no
bias), C = model_channels. Without a motion condition the released forward is v1's,
e = time_cond_proj(emb(w)).

Here the motion modules live inside the student's existing w projection (`cond_proj` in
both the diffusers UNet3D, where it is `time_embedding.cond_proj`, and our VideoCrafter2
UNet), whose class is switched to `MotionConditionedWProjection`: its own weight stays the
w projection (same key), and it takes either emb(w) [B, D] (v1: the released forward without
`motion_cond`) or concat[emb(w), emb(m)] [B, 2D]. Both UNets call `cond_proj(timestep_cond)`,
so neither UNet's code changes, and every tool that recognises the w projection by the
`cond_proj` name part (saving, loading, EMA, LoRA exclusion) covers the motion modules too.

Initialisation (`init`):
* "identity" (ours, default): combine_proj = [I | 0], motion_cond_proj = nn.Linear's default
  (seeded). The student then computes exactly v1's function for every m, and the zero block
  gets a non-zero gradient at once (d/dW_right = g emb_m^T), so the motion input can learn.
  (Zeroing both would be a saddle: neither would ever get a gradient.)
* "released": both layers keep nn.Linear's default init (kaiming-uniform, a = sqrt(5)), as in
  the released script, which builds the v2 UNet and loads the teacher's state dict with
  strict=False, so these two layers (and time_cond_proj) stay at PyTorch's random init.

The motion-condition value, in training (released script): m = motion_gs for a motion video
whose grid index is >= (1 - percentage) N, else 0, the same mask as the guidance term itself;
the same m goes into the online prediction and into the target. At inference (released
predict.py: 16 steps on the L = 200 origin grid, motion_gs 0.05, percentage 0.5): m = motion_gs
at the steps with t >= T (1 - percentage), else 0.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from t2v_turbo_core.motion_guidance import motion_guidance_active
from t2v_turbo_core.schedule import guidance_scale_embedding

MOTION_COND_INITS = ("identity", "released")
# Seed of the motion layers' random init: fixed, so every process (and every run) starts alike.
MOTION_COND_SEED = 1
# The released inference defaults (predict.py): 16 steps, origin grid 200, m = 0.05 on the
# first half of the timestep range. (The gradio app.py defaults to percentage 0.3 and 8 steps,
# and passes the motion condition only for `--version v1`, i.e. never for the v2 UNet.)
RELEASED_INFERENCE = {"num_steps": 16, "origin_steps": 200, "motion_gs": 0.05, "percentage": 0.5, "guidance_scale": 7.5}


class MotionConditionedWProjection(nn.Linear):
    """The w projection (its own `weight`) plus `motion_cond_proj` and `combine_proj`."""

    motion_cond_proj: nn.Linear
    combine_proj: nn.Linear

    def forward(self, cond: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        d_w, d_m = self.in_features, self.motion_cond_proj.in_features
        if cond.shape[-1] == d_w:  # no motion condition: the v1 forward, as the released code
            return F.linear(cond, self.weight)
        if cond.shape[-1] != d_w + d_m:
            raise ValueError(f"timestep_cond has {cond.shape[-1]} features; expected {d_w} (w) or {d_w + d_m} (w and motion)")
        w_emb, m_emb = cond.split([d_w, d_m], dim=-1)
        return self.combine_proj(torch.cat([F.linear(w_emb, self.weight), self.motion_cond_proj(m_emb)], dim=-1))


def find_w_projection(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) of the student's w projection: the one module named `...cond_proj`."""
    found = [(n, m) for n, m in model.named_modules() if n.split(".")[-1] == "cond_proj"]
    if len(found) != 1:
        raise ValueError(f"expected one w projection (a module named cond_proj), found {[n for n, _ in found]}")
    return found[0]


def has_motion_condition(model: nn.Module) -> bool:
    return any(isinstance(m, MotionConditionedWProjection) for m in model.modules())


def add_motion_condition(model: nn.Module, embedding_dim: int = 256, init: str = "identity", seed: int = MOTION_COND_SEED) -> nn.Module:
    """Give a built student (LoRA or full) the v2 motion input, in place; the new layers train in full."""
    if init not in MOTION_COND_INITS:
        raise ValueError(f"motion_cond_init={init!r} (use {' or '.join(map(repr, MOTION_COND_INITS))})")
    name, proj = find_w_projection(model)
    if isinstance(proj, MotionConditionedWProjection):
        raise ValueError(f"{name} already has a motion condition")
    if type(proj) is not nn.Linear or proj.bias is not None:
        # A LoRA-wrapped w projection (w_proj_init=released with LoRA) would apply its adapter
        # to the concatenated input; the motion input needs the w projection trained in full.
        raise ValueError(f"{name} is a {type(proj).__name__}, not a bias-free nn.Linear: the motion condition needs the "
                         "w projection trained in full (w_proj_init=zero, or full fine-tuning)")
    channels, device, dtype = proj.out_features, proj.weight.device, proj.weight.dtype
    generator = torch.Generator().manual_seed(seed)

    def default_init(out_f: int, in_f: int) -> torch.Tensor:
        w = torch.empty(out_f, in_f, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)  # nn.Linear's default
        return w

    motion = nn.Linear(embedding_dim, channels, bias=False, device=device, dtype=dtype)
    combine = nn.Linear(2 * channels, channels, bias=False, device=device, dtype=dtype)
    with torch.no_grad():
        motion.weight.copy_(default_init(channels, embedding_dim))
        if init == "identity":
            combine.weight.zero_()
            combine.weight[:, :channels].copy_(torch.eye(channels))
        else:
            combine.weight.copy_(default_init(channels, 2 * channels))
    proj.__class__ = MotionConditionedWProjection
    proj.motion_cond_proj = motion
    proj.combine_proj = combine
    motion.requires_grad_(True)
    combine.requires_grad_(True)
    return model


def motion_cond_values(index: torch.Tensor, use_motion_guide: torch.Tensor, motion_gs: float, num_grid_steps: int,
                       percentage: float) -> torch.Tensor:
    """Training: m = motion_gs where the sample is a motion video and index >= (1 - percentage) N, else 0."""
    active = motion_guidance_active(index, num_grid_steps, percentage) & torch.as_tensor(use_motion_guide).bool()
    return torch.where(active, torch.full(active.shape, float(motion_gs)), torch.zeros(active.shape))


def motion_cond_schedule(timesteps: Sequence[int], motion_gs: float = RELEASED_INFERENCE["motion_gs"],
                         percentage: float = RELEASED_INFERENCE["percentage"], num_train_timesteps: int = 1000) -> list[float]:
    """Inference: m at each sampling step, motion_gs where t >= T (1 - percentage), else 0."""
    threshold = num_train_timesteps * (1 - percentage)
    return [0.0 if t < threshold else float(motion_gs) for t in timesteps]


def with_motion_cond(w_emb: torch.Tensor, motion_values: torch.Tensor, embedding_dim: int = 256) -> torch.Tensor:
    """The student's `timestep_cond` with a motion condition: concat[emb(w), emb(m)] [B, 2D]."""
    m_emb = guidance_scale_embedding(torch.as_tensor(motion_values).reshape(-1), embedding_dim)
    return torch.cat([w_emb, m_emb.to(device=w_emb.device, dtype=w_emb.dtype)], dim=-1)


class ScheduledMotionCondition(nn.Module):
    """A v2 student for any sampler that calls it like a UNet: appends emb(m(t)) to timestep_cond,
    with m(t) the inference schedule (`motion_cond_schedule`) at the call's timestep."""

    def __init__(self, student: nn.Module, motion_gs: float = RELEASED_INFERENCE["motion_gs"],
                 percentage: float = RELEASED_INFERENCE["percentage"], num_train_timesteps: int = 1000, embedding_dim: int = 256):
        super().__init__()
        self.student = student
        self.motion_gs, self.percentage = float(motion_gs), float(percentage)
        self.num_train_timesteps, self.embedding_dim = num_train_timesteps, embedding_dim
        self.used: list[float] = []  # the value of m at each call, for the run record

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, *args: Any, timestep_cond: torch.Tensor | None = None,
                **kwargs: Any) -> Any:
        if timestep_cond is None:
            raise ValueError("a v2 student needs the guidance-scale embedding (timestep_cond)")
        t = torch.as_tensor(timestep).reshape(-1).expand(sample.shape[0])
        m = torch.tensor(motion_cond_schedule([int(x) for x in t.tolist()], self.motion_gs, self.percentage, self.num_train_timesteps),
                         dtype=torch.float64)
        self.used.append(float(m[0]))
        return self.student(sample, timestep, *args, timestep_cond=with_motion_cond(timestep_cond, m, self.embedding_dim), **kwargs)
