"""T2V-Turbo-v2's motion guidance: a MotionClone-style energy on temporal attention maps.

The reference is the training video's clean latent DDIM-inverted with its caption to the
sampled grid point (`inversion.ddim_invert`). At the sampled timestep t the teacher is run
on the reference and on the noisy latent z_t with the same caption, recording the temporal
self-attention probabilities A of its decoder (`attention_probs`). For each layer, m is the
top-1 mask of A_ref along the key axis (the frame each query attends to most in the
reference), and

    E(z_t) = energy_scale * mean_layers( attention_scale * mean_{m}( (A_ref - A_gen)^2 ) )

where mean_{m} averages over the masked entries only (one per query row: the released
code's `F.mse_loss(A_ref[m], A_gen[m])`), with attention_scale = energy_scale = 100 as in
the released code. A_ref is a constant (no gradient); the motion score is dE/dz_t.

Guidance (applied to the teacher's CFG noise estimate in the distillation ODE step):

    eps <- eps - motion_gs * c(t) * dE/dz_t,   only for grid index >= (1 - tau) N

with motion_gs = 0.05, tau = 0.5, N = 200 in the released recipe. Since E carries the two
factors of 100, the paper's lambda (the weight on the gradient of the plain masked MSE
averaged over layers) is motion_gs * 1e4 = 500.
"""

from __future__ import annotations

import contextlib
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from t2v_turbo_core.attention_probs import AttentionProbabilities
from t2v_turbo_core.models import predict_noise
from t2v_turbo_core.schedule import NoiseSchedule

ATTENTION_SCALE = 100.0  # the released code's x100 on each layer's masked MSE
ENERGY_SCALE = 100.0  # its `temp_loss_scale`, x100 on the mean over layers
COEFFICIENTS = ("released", "sigma")


def paper_lambda(motion_gs: float, attention_scale: float = ATTENTION_SCALE, energy_scale: float = ENERGY_SCALE) -> float:
    """The paper's lambda for a released-code motion_gs: motion_gs x 100 x 100 (0.05 -> 500)."""
    return motion_gs * attention_scale * energy_scale


def motion_gs_from_lambda(lam: float, attention_scale: float = ATTENTION_SCALE, energy_scale: float = ENERGY_SCALE) -> float:
    """Inverse of `paper_lambda` (500 -> 0.05)."""
    return lam / (attention_scale * energy_scale)


def top1_key_mask(reference: torch.Tensor) -> torch.Tensor:
    """Boolean mask with one True per query row: the key with the largest reference probability.

    Ties (measure zero for real maps) go to the first maximal key (argmax).
    """
    return torch.nn.functional.one_hot(reference.argmax(dim=-1), reference.shape[-1]).bool()


def masked_attention_mse(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Mean of (A_ref - A_gen)^2 over the top-1 entries of A_ref only (the reference is detached)."""
    if reference.shape != generated.shape:
        raise ValueError(f"attention maps differ in shape: {tuple(reference.shape)} vs {tuple(generated.shape)}")
    mask = top1_key_mask(reference)
    return ((reference.detach()[mask] - generated[mask]) ** 2).mean()


def motion_energy(
    reference_maps: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    generated_maps: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    attention_scale: float = ATTENTION_SCALE,
    energy_scale: float = ENERGY_SCALE,
) -> torch.Tensor:
    """E = energy_scale * mean over layers of (attention_scale * masked MSE) (see the module doc)."""
    if isinstance(reference_maps, Mapping):
        if not isinstance(generated_maps, Mapping) or set(reference_maps) != set(generated_maps):
            raise ValueError("reference and generated maps must come from the same layers")
        names = list(reference_maps)
        reference_maps = [reference_maps[n] for n in names]
        generated_maps = [generated_maps[n] for n in names]
    if len(reference_maps) != len(generated_maps) or not reference_maps:
        raise ValueError("need one generated map per reference map (and at least one layer)")
    per_layer = torch.stack([attention_scale * masked_attention_mse(r, g) for r, g in zip(reference_maps, generated_maps)])
    return energy_scale * per_layer.mean()


@contextlib.contextmanager
def _eval(module: nn.Module):
    # The released code takes the score with the teacher in eval mode (no dropout): the
    # energy must be a deterministic function of z_t for its gradient to mean anything.
    was = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in was:
            m.training = flag


def motion_score(
    unet: nn.Module,
    z_t: torch.Tensor,
    t: torch.Tensor,
    reference_latent: torch.Tensor,
    text_embedding: torch.Tensor,
    layers: Sequence[str] | None = None,
    unet_kwargs: dict[str, Any] | None = None,
    attention_scale: float = ATTENTION_SCALE,
    energy_scale: float = ENERGY_SCALE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dE/dz_t, the conditional eps at z_t, E) for the teacher `unet` at timesteps `t` [B].

    The reference maps come from `reference_latent` (the inverted latent at the same grid
    point) at the same t and caption, without gradient. The conditional eps is the output of
    the same forward pass that the gradient goes through (the released code stores it as the
    cond teacher eps). No parameter gradients are accumulated.
    """
    kwargs = dict(unet_kwargs or {})
    with _eval(unet), AttentionProbabilities(unet, layers) as rec:
        with torch.no_grad():
            predict_noise(unet, reference_latent, t, text_embedding, None, **kwargs)
            reference = [m.detach() for m in rec.ordered()]
        rec.maps.clear()
        with torch.enable_grad():
            z = z_t.detach().requires_grad_(True)
            eps = predict_noise(unet, z, t, text_embedding, None, **kwargs)
            energy = motion_energy(reference, rec.ordered(), attention_scale, energy_scale)
            (grad,) = torch.autograd.grad(energy, z)
    return grad.detach(), eps.detach(), energy.detach()


def motion_guidance_coefficient(schedule: NoiseSchedule, t: torch.Tensor, ndim: int, form: str = "released") -> torch.Tensor:
    """c(t), the per-timestep factor on the motion score, shaped to broadcast against `ndim`.

    "released" (default): sqrt(1 - sqrt(abar_t)). This is what the released v2 training and
    MotionClone-sampling code compute: they take `alphas = alpha_schedule[t]` where
    `alpha_schedule = sqrt(abar)` and subtract `motion_gs * (1 - alphas) ** 0.5 * score`.
    We use it because the stated lambda = 500 and tau = 0.5 were tuned with it.
    "sigma": sqrt(1 - abar_t), the noise level sigma_t (the factor that turns a gradient of
    log-density into an eps correction); it is larger than "released" at every t
    (abar < sqrt(abar)): by 1.03x at t = 999, 1.24x at t = 500, tending to sqrt(2) as t -> 0.
    """
    if form not in COEFFICIENTS:
        raise ValueError(f"unknown motion-guidance coefficient {form!r}; use one of {COEFFICIENTS}")
    abar = schedule.alpha_bar(t).double()
    c = (1 - abar.sqrt()).sqrt() if form == "released" else (1 - abar).sqrt()
    return c.reshape(-1, *([1] * (ndim - 1)))


def motion_guidance_active(index: torch.Tensor, num_grid_steps: int, tau: float) -> torch.Tensor:
    """Grid indices that get guidance: index >= (1 - tau) N (N = 200, tau = 0.5: 100..199)."""
    return torch.as_tensor(index) >= (1 - tau) * num_grid_steps


def apply_motion_guidance(
    eps: torch.Tensor,
    score: torch.Tensor,
    index: torch.Tensor,
    t: torch.Tensor,
    schedule: NoiseSchedule,
    motion_gs: float | torch.Tensor,
    num_grid_steps: int,
    tau: float = 0.5,
    use_motion_guide: torch.Tensor | None = None,
    coefficient: str = "released",
) -> torch.Tensor:
    """eps - motion_gs c(t) score where guidance is active (index >= (1 - tau) N, and the
    sample is a motion video when `use_motion_guide` [B] is given); eps unchanged elsewhere.
    x0 is not touched (the released code leaves its CFG x0 as it is)."""
    b, nd = eps.shape[0], eps.ndim
    active = motion_guidance_active(index, num_grid_steps, tau).reshape(b).to(eps.device)
    if use_motion_guide is not None:
        active = active & torch.as_tensor(use_motion_guide, device=eps.device).bool().reshape(b)
    gs = torch.as_tensor(motion_gs, dtype=torch.float64, device=eps.device).expand(b)
    c = motion_guidance_coefficient(schedule, t, nd, coefficient).to(eps.device)
    factor = torch.where(active, gs, torch.zeros_like(gs)).reshape(b, *([1] * (nd - 1))) * c
    return eps - factor.to(eps.dtype) * score.to(eps.dtype)
