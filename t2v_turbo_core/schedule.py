"""Noise schedule, DDIM solver, LCM boundary conditions and timestep grids.

A noise schedule is a table of numbers plus a few pure functions (the diffusers way).
Everything here is eps-prediction with the latent-diffusion "scaled linear" betas that
VideoCrafter2 and ModelScopeT2V were trained with: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)**2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000
# L of a v1 student's LCM origin grid: its distillation grid for k = 20 (a v2 student, k = 5, uses 200).
LCM_ORIGIN_STEPS = 50
# The embedded guidance scale w a student samples with unless told otherwise (T2V-Turbo's inference default).
STUDENT_GUIDANCE_SCALE = 7.5


def scaled_linear_betas(
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
) -> torch.Tensor:
    """`linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2`, in float32 like diffusers."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2


def _broadcast(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.reshape(values.shape[0], *([1] * (ndim - 1)))


@dataclass(frozen=True)
class NoiseSchedule:
    """The teacher's forward process q(z_t | z_0) = N(sqrt(abar_t) z_0, (1 - abar_t) I)."""

    alphas_cumprod: torch.Tensor  # [T], float32

    @classmethod
    def scaled_linear(
        cls,
        num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
    ) -> "NoiseSchedule":
        betas = scaled_linear_betas(num_train_timesteps, beta_start, beta_end)
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """abar_t for integer timesteps; t = -1 means the clean end of the chain (abar = 1)."""
        t = torch.as_tensor(t).long()
        table = self.alphas_cumprod.to(t.device)
        clean = torch.ones((), dtype=table.dtype, device=t.device)
        return torch.where(t >= 0, table[t.clamp(min=0)], clean)

    def alpha_sigma(self, t: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(abar_t), sqrt(1 - abar_t)) shaped to broadcast against an `ndim` tensor."""
        abar = _broadcast(self.alpha_bar(t).float(), ndim)
        return abar.sqrt(), (1.0 - abar).sqrt()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.alpha_sigma(t, x0.ndim)
        return (alpha * x0.float() + sigma * noise.float()).to(x0.dtype)

    def pred_original_sample(self, eps: torch.Tensor, t: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        """x0 implied by an eps prediction: (z_t - sigma_t eps) / alpha_t."""
        alpha, sigma = self.alpha_sigma(t, z_t.ndim)
        return (z_t.float() - sigma * eps.float()) / alpha

    def pred_noise(self, x0: torch.Tensor, t: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.alpha_sigma(t, z_t.ndim)
        return (z_t.float() - alpha * x0.float()) / sigma


def ddim_step(
    schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t_prev: torch.Tensor
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0): z_{t_prev} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps.

    `t_prev = -1` lands on the clean sample (diffusers' `set_alpha_to_one=True`).
    """
    alpha, sigma = schedule.alpha_sigma(t_prev, x0.ndim)
    return alpha * x0 + sigma * eps


def ddim_grid(skip: int = 20, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The distillation grid t_i = (i + 1) * k - 1: 19, 39, ..., 999 for k = 20 (N = 50).

    T2V-Turbo-v2 uses k = 5 (N = 200). Ascending order; index i pairs t_{n+k} = grid[i]
    with t_n = grid[i] - k (clamped at 0, as in the LCM and T2V-Turbo training scripts).
    """
    if skip < 1 or num_train_timesteps % skip:
        raise ValueError(f"skip interval k={skip} must divide {num_train_timesteps}")
    return torch.arange(1, num_train_timesteps // skip + 1) * skip - 1


def sampling_timesteps(
    num_steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, spacing: str = "trailing"
) -> list[int]:
    """Descending timesteps of an n-step DDIM sampler, as diffusers' DDIMScheduler sets them.

    "trailing": 999, 979, ..., 19 for 50 steps (the grid the student was distilled on).
    "leading": 981, 961, ..., 1 (diffusers' leading spacing with steps_offset=1; VideoCrafter's
    "uniform" DDIM discretisation).
    """
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_train_timesteps}], got {num_steps}")
    if spacing == "trailing":
        ts = np.round(np.arange(num_train_timesteps, 0, -num_train_timesteps / num_steps)).astype(np.int64) - 1
    elif spacing == "leading":
        ratio = num_train_timesteps // num_steps
        ts = (np.arange(0, num_steps) * ratio).round()[::-1].astype(np.int64) + 1
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; use 'trailing' or 'leading'")
    return [int(t) for t in ts]


def lcm_timesteps(
    num_steps: int,
    origin_steps: int = LCM_ORIGIN_STEPS,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    spacing: str = "strided",
) -> list[int]:
    """The student's n-step schedule, picked from the LCM origin grid of `origin_steps` points.

    origin = arange(1..L) * (T // L) - 1. Two published rules pick n of them:
    * "strided" (T2V-Turbo's `T2VTurboScheduler` and diffusers' LCMScheduler before v0.26):
      `origin[::-(L // n)][:n]` -> 4 steps of L=50: 999, 759, 519, 279.
    * "linspace" (diffusers' LCMScheduler since v0.26): indices floor(linspace(0, L, n)) into the
      reversed origin -> 4 steps: 999, 759, 499, 259.
    """
    if not 1 <= num_steps <= origin_steps:
        raise ValueError(f"num_steps must be in [1, origin_steps={origin_steps}], got {num_steps}")
    origin = np.arange(1, origin_steps + 1) * (num_train_timesteps // origin_steps) - 1
    if spacing == "strided":
        ts = origin[:: -(origin_steps // num_steps)][:num_steps]
    elif spacing == "linspace":
        idx = np.floor(np.linspace(0, origin_steps, num=num_steps, endpoint=False)).astype(np.int64)
        ts = origin[::-1][idx]
    else:
        raise ValueError(f"unknown LCM spacing {spacing!r}; use 'strided' or 'linspace'")
    return [int(t) for t in ts]


def boundary_scalings(
    t: torch.Tensor, sigma_data: float = 0.5, timestep_scaling: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM boundary condition: f(z, t) = c_skip(t) z + c_out(t) x0_pred(z, t).

    c_skip = sigma_data^2 / ((s t)^2 + sigma_data^2), c_out = s t / sqrt((s t)^2 + sigma_data^2),
    so f is (almost) the identity at t = 0 (LCM paper, diffusers' LCMScheduler).
    """
    scaled = timestep_scaling * torch.as_tensor(t).float()
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


def guidance_scale_embedding(
    w: torch.Tensor, embedding_dim: int = 256, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Sinusoidal embedding of the guidance scale, fed to the student as `timestep_cond`.

    The scale is multiplied by 1000 so that it lives on the timestep range (LCM; diffusers'
    `get_guidance_scale_embedding`). Returns [B, embedding_dim].
    """
    w = torch.as_tensor(w).reshape(-1).to(dtype) * 1000.0
    half = embedding_dim // 2
    freqs = torch.exp(torch.arange(half, dtype=dtype, device=w.device) * -(math.log(10000.0) / (half - 1)))
    angles = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if embedding_dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb
