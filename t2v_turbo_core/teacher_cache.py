"""Precomputed teacher targets (T2V-Turbo-v2): the teacher runs once per video, offline.

v2 never runs the teacher during training. Per training video, preprocessing draws one grid
index n and one noise, forms z_{t_{n+k}}, and stores the teacher's conditional and
unconditional noise predictions there, the motion-guidance score (motion videos only; the
released code draws motion videos' indices from the upper half of the grid) and the
caption embedding. Training from such a record is the distillation step without the
teacher forward: w ~ U[w_min, w_max] is drawn per step and applied to the stored eps in
LCM's CFG form, then motion guidance, then one DDIM step to t_n and theta^- there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from t2v_turbo_core.distillation import _eval_mode
from t2v_turbo_core.inversion import ddim_invert
from t2v_turbo_core.models import predict_noise
from t2v_turbo_core.motion_guidance import apply_motion_guidance, motion_score
from t2v_turbo_core.schedule import NoiseSchedule, boundary_scalings, ddim_grid, ddim_step, guidance_scale_embedding


@dataclass
class PrecomputedTeacherTarget:
    """One video's stored teacher evaluation (tensors without the batch axis)."""

    index: int  # grid index n: the start timestep is grid[n] = (n + 1) k - 1
    noisy_latent: torch.Tensor  # z_{t_{n+k}} [C, F, h, w]
    eps_cond: torch.Tensor  # teacher eps with the caption
    eps_uncond: torch.Tensor  # teacher eps with the empty caption
    motion_score: torch.Tensor | None  # dE/dz_t, or None for a video without motion guidance
    prompt_embedding: torch.Tensor  # the caption's embedding [L, D] (the long caption in v2)

    @property
    def use_motion_guide(self) -> bool:
        return self.motion_score is not None


@dataclass
class TeacherTargetBatch:
    index: torch.Tensor  # [B]
    noisy_latent: torch.Tensor
    eps_cond: torch.Tensor
    eps_uncond: torch.Tensor
    motion_score: torch.Tensor  # zeros where a video has none
    use_motion_guide: torch.Tensor  # [B] bool
    prompt_embedding: torch.Tensor


def collate(records: Sequence[PrecomputedTeacherTarget]) -> TeacherTargetBatch:
    if not records:
        raise ValueError("no records to collate")
    z = torch.stack([r.noisy_latent for r in records])
    return TeacherTargetBatch(
        index=torch.tensor([int(r.index) for r in records]),
        noisy_latent=z,
        eps_cond=torch.stack([r.eps_cond for r in records]),
        eps_uncond=torch.stack([r.eps_uncond for r in records]),
        motion_score=torch.stack([r.motion_score if r.motion_score is not None else torch.zeros_like(r.noisy_latent) for r in records]),
        use_motion_guide=torch.tensor([r.use_motion_guide for r in records]),
        prompt_embedding=torch.stack([r.prompt_embedding for r in records]),
    )


@torch.no_grad()
def precompute_teacher_target(
    teacher: Any,
    schedule: NoiseSchedule,
    latent: torch.Tensor,
    text_embedding: torch.Tensor,
    uncond_embedding: torch.Tensor,
    generator: torch.Generator | None = None,
    skip: int = 5,
    index_range: tuple[int, int] | None = None,
    motion: bool = False,
    layers: Sequence[str] | None = None,
    unet_kwargs: dict[str, Any] | None = None,
) -> PrecomputedTeacherTarget:
    """The record for one clean `latent` [C, F, h, w] with caption embedding [L, D].

    `index_range` = [lo, hi) of grid indices to draw from (default: the whole grid). With
    `motion`, the reference is the latent DDIM-inverted with its caption to grid[index] and
    the score is taken at z_t; its forward pass also gives the conditional eps.
    """
    grid = ddim_grid(skip, schedule.num_train_timesteps)
    lo, hi = index_range if index_range is not None else (0, len(grid))
    if not 0 <= lo < hi <= len(grid):
        raise ValueError(f"index_range must satisfy 0 <= lo < hi <= {len(grid)}, got {index_range}")
    index = int(torch.randint(lo, hi, (1,), generator=generator))
    x0, c = latent.unsqueeze(0), text_embedding.unsqueeze(0)
    t = grid[index].reshape(1).to(latent.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(device=x0.device, dtype=x0.dtype)
    z_t = schedule.add_noise(x0, noise, t)
    kwargs = dict(unet_kwargs or {})
    uncond = uncond_embedding.reshape(1, *uncond_embedding.shape[-2:]).to(device=c.device, dtype=c.dtype)
    score = None
    # The teacher in eval mode (no dropout), as the released preprocessing runs it.
    with _eval_mode(teacher):
        eps_u = predict_noise(teacher, z_t, t, uncond, None, **kwargs)
        if motion:
            reference = ddim_invert(teacher, schedule, x0, c, index, skip, kwargs)
            score, eps_c, _ = motion_score(teacher, z_t, t, reference, c, layers, kwargs)
            score = score[0]
        else:
            eps_c = predict_noise(teacher, z_t, t, c, None, **kwargs)
    return PrecomputedTeacherTarget(index, z_t[0], eps_c[0].detach(), eps_u[0].detach(), score, text_embedding.detach())


def teacher_ode_step(
    schedule: NoiseSchedule,
    z_start: torch.Tensor,
    t_start: torch.Tensor,
    t_end: torch.Tensor,
    eps_cond: torch.Tensor,
    eps_uncond: torch.Tensor,
    w: torch.Tensor,
    motion_score: torch.Tensor | None = None,
    index: torch.Tensor | None = None,
    use_motion_guide: torch.Tensor | None = None,
    motion_gs: float = 0.0,
    tau: float = 0.5,
    num_grid_steps: int = 200,
    coefficient: str = "released",
) -> torch.Tensor:
    """z_hat_{t_n}: LCM-form CFG with scale w [B] on both x0 and eps, motion guidance on eps
    (not on x0, as the released code), then one deterministic DDIM step to t_end."""
    nd = z_start.ndim
    w_b = w.reshape(-1, *([1] * (nd - 1))).to(z_start.dtype)
    eps_c, eps_u = eps_cond.float(), eps_uncond.float()
    x0_c = schedule.pred_original_sample(eps_c, t_start, z_start)
    x0_u = schedule.pred_original_sample(eps_u, t_start, z_start)
    x0_cfg = x0_c + w_b * (x0_c - x0_u)
    eps_cfg = eps_c + w_b * (eps_c - eps_u)
    if motion_score is not None and motion_gs:
        if index is None:
            raise ValueError("motion guidance needs the grid index of each sample")
        eps_cfg = apply_motion_guidance(
            eps_cfg, motion_score.float(), index, t_start, schedule, motion_gs, num_grid_steps, tau, use_motion_guide, coefficient
        )
    return ddim_step(schedule, x0_cfg, eps_cfg, t_end)


def consistency_target_from_records(
    distiller: Any,
    batch: TeacherTargetBatch,
    w: torch.Tensor,
    motion_gs: float = 0.0,
    tau: float = 0.5,
    coefficient: str = "released",
) -> torch.Tensor:
    """The distillation target f_{theta^-}(z_hat_{t_n}, w, c, t_n) from stored teacher eps.

    The same computation as `ConsistencyDistiller`'s live-teacher target (theta^- in eval
    mode, under no_grad, EMA swapped in if the distiller has one), with the teacher forward
    replaced by the record. Returns [B, C, F, h, w].
    """
    cfg, schedule = distiller.config, distiller.schedule
    z_start = batch.noisy_latent
    b, device, dtype, nd = z_start.shape[0], z_start.device, z_start.dtype, z_start.ndim
    grid = ddim_grid(cfg.skip, schedule.num_train_timesteps)
    t_start = grid[batch.index].to(device)
    t_end = (t_start - cfg.skip).clamp(min=0)
    w = w.to(device)
    w_emb = guidance_scale_embedding(w, cfg.guidance_embedding_dim).to(device=device, dtype=dtype)
    text = batch.prompt_embedding.to(device)
    with torch.no_grad(), distiller._autocast(device), _eval_mode(distiller.student):
        z_end = teacher_ode_step(
            schedule, z_start, t_start, t_end, batch.eps_cond, batch.eps_uncond, w,
            batch.motion_score, batch.index, batch.use_motion_guide, motion_gs, tau, len(grid), coefficient,
        ).to(dtype)
        swap = distiller.ema.swapped_in() if distiller.ema is not None else contextlib.nullcontext()
        with swap:
            eps_target = predict_noise(distiller.student, z_end, t_end, text, w_emb, **distiller.unet_kwargs).float()
        x0_target = schedule.pred_original_sample(eps_target, t_end, z_end)
        c_skip, c_out = boundary_scalings(t_end, cfg.sigma_data, cfg.timestep_scaling)
        shape = (b, *([1] * (nd - 1)))
        return c_skip.reshape(shape).to(dtype) * z_end + c_out.reshape(shape).to(dtype) * x0_target
