"""Samplers: the student's n-step consistency sampler and the teacher's DDIM + CFG baseline.

Both run under `torch.no_grad()` (no graph is ever kept through a sampling loop) and
return the exact timesteps used and the number of network evaluations per video (NFE):
the student costs n, the teacher 2 per step with classifier-free guidance (METHOD.md §4).
Per-video generators make every video reproducible from its own seed, whatever the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from t2v_turbo_core.models import predict_noise
from t2v_turbo_core.schedule import (
    NoiseSchedule,
    boundary_scalings,
    ddim_step,
    guidance_scale_embedding,
    lcm_timesteps,
    sampling_timesteps,
)

Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class SamplerOutput:
    latents: torch.Tensor  # [B, C, F, h, w]
    timesteps: list[int]
    nfe: int  # network evaluations per video


def randn_per_video(shape: Sequence[int], generators: Generators, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Gaussian noise drawn on the CPU, one generator per video when a list is given."""
    shape = tuple(shape)
    if isinstance(generators, (list, tuple)):
        if len(generators) != shape[0]:
            raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
        noise = torch.stack([torch.randn(shape[1:], generator=g, dtype=torch.float32) for g in generators])
    else:
        noise = torch.randn(shape, generator=generators, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


@torch.no_grad()
def consistency_sample(
    student: nn.Module,
    text_embedding: torch.Tensor,
    shape: Sequence[int],
    schedule: NoiseSchedule,
    num_steps: int = 4,
    guidance_scale: float = 7.5,
    origin_steps: int = 50,
    spacing: str = "strided",
    generator: Generators = None,
    latents: torch.Tensor | None = None,
    guidance_embedding_dim: int = 256,
    sigma_data: float = 0.5,
    timestep_scaling: float = 10.0,
    unet_kwargs: dict[str, Any] | None = None,
) -> SamplerOutput:
    """LCM multistep sampling: denoise with the boundary condition, re-noise, repeat.

    `guidance_scale` is embedded (LCM form, default 7.5); no CFG pass is run, so the cost is
    exactly `num_steps` network evaluations.
    """
    device = text_embedding.device
    dtype = text_embedding.dtype
    b = shape[0]
    timesteps = lcm_timesteps(num_steps, origin_steps, schedule.num_train_timesteps, spacing)
    z = latents.to(device=device, dtype=dtype) if latents is not None else randn_per_video(shape, generator, device, dtype)
    w_emb = guidance_scale_embedding(torch.full((b,), float(guidance_scale)), guidance_embedding_dim).to(device=device, dtype=dtype)
    denoised = z
    for i, t in enumerate(timesteps):
        t_batch = torch.full((b,), t, device=device, dtype=torch.long)
        eps = predict_noise(student, z, t_batch, text_embedding, w_emb, **(unet_kwargs or {}))
        x0 = schedule.pred_original_sample(eps.float(), t_batch, z)
        c_skip, c_out = boundary_scalings(torch.tensor(float(t)), sigma_data, timestep_scaling)
        denoised = c_skip * z.float() + c_out * x0
        if i + 1 < len(timesteps):
            t_next = torch.full((b,), timesteps[i + 1], device=device, dtype=torch.long)
            noise = randn_per_video(z.shape, generator, device, torch.float32)
            z = schedule.add_noise(denoised, noise, t_next).to(dtype)
    return SamplerOutput(latents=denoised.to(dtype), timesteps=timesteps, nfe=len(timesteps))


@torch.no_grad()
def teacher_ddim_sample(
    teacher: nn.Module,
    text_embedding: torch.Tensor,
    uncond_embedding: torch.Tensor,
    shape: Sequence[int],
    schedule: NoiseSchedule,
    num_steps: int = 50,
    guidance_scale: float = 7.5,
    spacing: str = "trailing",
    generator: Generators = None,
    latents: torch.Tensor | None = None,
    unet_kwargs: dict[str, Any] | None = None,
) -> SamplerOutput:
    """DDIM (eta = 0) with classifier-free guidance eps = eps_u + g (eps_c - eps_u).

    `guidance_scale` is the usual CFG scale (7.5 for VideoCrafter2, 9.0 for ModelScope);
    g <= 1 disables the unconditional pass. The last step lands on abar = 1.
    """
    device = text_embedding.device
    dtype = text_embedding.dtype
    b = shape[0]
    timesteps = sampling_timesteps(num_steps, schedule.num_train_timesteps, spacing)
    ratio = schedule.num_train_timesteps // num_steps
    use_cfg = guidance_scale > 1.0
    uncond = uncond_embedding.to(device=device, dtype=dtype).expand(b, *text_embedding.shape[1:])
    z = latents.to(device=device, dtype=dtype) if latents is not None else randn_per_video(shape, generator, device, dtype)
    for t in timesteps:
        t_batch = torch.full((b,), t, device=device, dtype=torch.long)
        if use_cfg:
            eps_c, eps_u = predict_noise(
                teacher, torch.cat([z, z]), torch.cat([t_batch, t_batch]), torch.cat([text_embedding, uncond]), None,
                **(unet_kwargs or {}),
            ).float().chunk(2)
            eps = eps_u + guidance_scale * (eps_c - eps_u)
        else:
            eps = predict_noise(teacher, z, t_batch, text_embedding, None, **(unet_kwargs or {})).float()
        x0 = schedule.pred_original_sample(eps, t_batch, z)
        t_prev = torch.full((b,), t - ratio, device=device, dtype=torch.long)
        z = ddim_step(schedule, x0, eps, t_prev).to(dtype)
    return SamplerOutput(latents=z, timesteps=timesteps, nfe=len(timesteps) * (2 if use_cfg else 1))
