"""Deterministic DDIM inversion and DDIM sampling on the distillation grid (eta = 0).

T2V-Turbo-v2 builds the motion reference of a training video by inverting its clean latent,
conditioned on its caption, up to the grid index of the sampled timestep. The grid is the
distillation grid t_i = (i + 1) k - 1 with k = 1000 // N (N = 200: 4, 9, ..., 999).

Conventions (those of the released v2 code's DDIM solver, so that the reference lands on
the same points):
* The clean latent is the chain's point at t = 0 (abar_0 ~ 0.99915), the same place the
  distillation's last ODE step lands on (t_n = max(t_{n+k} - k, 0)).
* Inversion step i goes from t_prev = max(t_i - k, 0) to t_i and evaluates the noise at
  the current latent with the *target* timestep t_i (the usual DDIM-inversion
  approximation eps(z_{t_prev}, t_i) ~ eps(z_{t_i}, t_i)):
      x0 = (z - sqrt(1 - abar_prev) eps) / sqrt(abar_prev)
      z' = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
* Sampling step i goes from t_i to t_prev with eps(z_{t_i}, t_i): the exact inverse of the
  inversion step when both noise predictions agree, so the round trip is exact for a
  model whose prediction does not depend on its input latent (an exact-noise oracle), and
  approximate otherwise (error of the order of how much eps changes over one grid step).
"""

from __future__ import annotations

from typing import Any

import torch

from t2v_turbo_core.models import predict_noise
from t2v_turbo_core.schedule import NoiseSchedule, ddim_grid


def _check_index(index: int, grid: torch.Tensor) -> None:
    if not 0 <= index < len(grid):
        raise ValueError(f"grid index must be in [0, {len(grid) - 1}], got {index}")


def _step(schedule: NoiseSchedule, z: torch.Tensor, eps: torch.Tensor, t_from: int, t_to: int) -> torch.Tensor:
    """Deterministic DDIM move of z from t_from to t_to with noise estimate eps (either direction)."""
    abar = schedule.alphas_cumprod.to(device=z.device, dtype=torch.float64)
    a_from, a_to = abar[t_from], abar[t_to]
    x0 = (z - (1 - a_from).sqrt().to(z.dtype) * eps) / a_from.sqrt().to(z.dtype)
    return a_to.sqrt().to(z.dtype) * x0 + (1 - a_to).sqrt().to(z.dtype) * eps


@torch.no_grad()
def ddim_invert(
    unet: Any,
    schedule: NoiseSchedule,
    latents: torch.Tensor,
    text_embedding: torch.Tensor,
    index: int,
    skip: int = 5,
    unet_kwargs: dict[str, Any] | None = None,
    return_all: bool = False,
) -> torch.Tensor | list[torch.Tensor]:
    """Invert clean `latents` [B, C, F, h, w] with their caption embedding to grid point `index`.

    Runs index + 1 steps (t = grid[0], ..., grid[index]); returns the latent at grid[index],
    or with `return_all` the list of the latents at grid[0..index].
    """
    grid = ddim_grid(skip, schedule.num_train_timesteps)
    _check_index(index, grid)
    z, out = latents, []
    for i in range(index + 1):
        t = int(grid[i])
        t_prev = max(t - skip, 0)
        eps = predict_noise(unet, z, torch.full((z.shape[0],), t, device=z.device), text_embedding, None, **(unet_kwargs or {}))
        z = _step(schedule, z, eps.to(z.dtype), t_prev, t)
        out.append(z)
    return out if return_all else z


@torch.no_grad()
def ddim_sample_from(
    unet: Any,
    schedule: NoiseSchedule,
    z: torch.Tensor,
    text_embedding: torch.Tensor,
    index: int,
    skip: int = 5,
    unet_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """DDIM sampling (eta = 0, conditional noise only) from grid point `index` down to t = 0.

    The matching inverse of `ddim_invert`: `ddim_sample_from(ddim_invert(x, i), i)` ~ x.
    """
    grid = ddim_grid(skip, schedule.num_train_timesteps)
    _check_index(index, grid)
    for i in range(index, -1, -1):
        t = int(grid[i])
        eps = predict_noise(unet, z, torch.full((z.shape[0],), t, device=z.device), text_embedding, None, **(unet_kwargs or {}))
        z = _step(schedule, z, eps.to(z.dtype), t, max(t - skip, 0))
    return z
