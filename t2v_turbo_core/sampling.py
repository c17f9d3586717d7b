"""Samplers: the student's n-step consistency sampler and the teacher's DDIM + CFG baseline.

Both run under `torch.no_grad()` (no graph is ever kept through a sampling loop) and
return the exact timesteps used and the number of network evaluations per video (NFE):
the student costs n, the teacher 2 per step with classifier-free guidance (the conditional
and the unconditional prediction count one each, whether they run in one batched call or
two). Per-video generators make every video reproducible from its own seed, whatever the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from t2v_turbo_core.models import cached_dtype, predict_noise
from t2v_turbo_core.schedule import (
    LCM_ORIGIN_STEPS,
    STUDENT_GUIDANCE_SCALE,
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
    guidance_scale: float = STUDENT_GUIDANCE_SCALE,
    origin_steps: int = LCM_ORIGIN_STEPS,
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
    with cached_dtype(student):  # diffusers' per-call dtype walk, once per sampling call
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


def prepare_for_sampling(student: nn.Module) -> nn.Module:
    """A trained LoRA student as generation runs it: adapters merged, eval mode, no grads.

    An unmerged adapter makes every Linear / Conv run three products instead of one, and a
    student left in train mode samples with the UNet's own dropout (diffusers' temporal convs:
    p = 0.1); on the tiny world either costs the student ~1.5-2x per network evaluation.
    """
    from t2v_turbo_core.lora import merge_lora

    return merge_lora(student).eval().requires_grad_(False)


CFG_BATCHINGS = ("auto", "one_call", "two_calls")
# From this many videos per call up, the CPU runs CFG's two predictions as two calls of B videos
# rather than one of 2B: measured on the tiny world (2-core CPU, one thread), one call is
# cheaper per NFE below 8 videos (the per-call cost is paid once for two NFE: 48 vs 2 x 31 ms
# at 1 video) and dearer from 16 up (16: 633 vs 2 x 270 ms; 32: 1358 vs 2 x 554 ms), and from
# 16 videos up both give bit-identical predictions there. A GPU always gets the one batched call.
CFG_SPLIT_MIN_BATCH = 16


def cfg_in_one_call(batch: int, device: torch.device | str, cfg_batching: str = "auto") -> bool:
    """Whether CFG's conditional and unconditional predictions run as one call of 2B videos."""
    if cfg_batching not in CFG_BATCHINGS:
        raise ValueError(f"cfg_batching={cfg_batching!r} (use {', '.join(map(repr, CFG_BATCHINGS))})")
    if cfg_batching != "auto":
        return cfg_batching == "one_call"
    return torch.device(device).type != "cpu" or batch < CFG_SPLIT_MIN_BATCH


@torch.no_grad()
def _guided_noise(teacher, z, t_batch, text_embedding, uncond, guidance_scale: float, unet_kwargs,
                  cfg_batching: str = "auto") -> torch.Tensor:
    """The teacher's CFG noise eps_u + g (eps_c - eps_u): 2 NFE per video, cond and uncond in
    one batched call or two (`cfg_in_one_call`); g <= 1: the conditional pass alone (1 NFE)."""
    kwargs = unet_kwargs or {}
    if guidance_scale > 1.0:
        if cfg_in_one_call(z.shape[0], z.device, cfg_batching):
            eps_c, eps_u = predict_noise(
                teacher, torch.cat([z, z]), torch.cat([t_batch, t_batch]), torch.cat([text_embedding, uncond]), None, **kwargs,
            ).float().chunk(2)
        else:
            eps_c = predict_noise(teacher, z, t_batch, text_embedding, None, **kwargs).float()
            eps_u = predict_noise(teacher, z, t_batch, uncond, None, **kwargs).float()
        return eps_u + guidance_scale * (eps_c - eps_u)
    return predict_noise(teacher, z, t_batch, text_embedding, None, **kwargs).float()


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
    cfg_batching: str = "auto",
) -> SamplerOutput:
    """DDIM (eta = 0) with classifier-free guidance eps = eps_u + g (eps_c - eps_u).

    `guidance_scale` is the usual CFG scale (7.5 for VideoCrafter2, 9.0 for ModelScope);
    g <= 1 disables the unconditional pass. The last step lands on abar = 1.
    `cfg_batching`: how the two predictions are batched (`cfg_in_one_call`); NFE is 2 per step.
    """
    device = text_embedding.device
    dtype = text_embedding.dtype
    b = shape[0]
    timesteps = sampling_timesteps(num_steps, schedule.num_train_timesteps, spacing)
    ratio = schedule.num_train_timesteps // num_steps
    use_cfg = guidance_scale > 1.0
    uncond = uncond_embedding.to(device=device, dtype=dtype).expand(b, *text_embedding.shape[1:])
    z = latents.to(device=device, dtype=dtype) if latents is not None else randn_per_video(shape, generator, device, dtype)
    with cached_dtype(teacher):
        for t in timesteps:
            t_batch = torch.full((b,), t, device=device, dtype=torch.long)
            eps = _guided_noise(teacher, z, t_batch, text_embedding, uncond, guidance_scale, unet_kwargs, cfg_batching)
            x0 = schedule.pred_original_sample(eps, t_batch, z)
            t_prev = torch.full((b,), t - ratio, device=device, dtype=torch.long)
            z = ddim_step(schedule, x0, eps, t_prev).to(dtype)
    return SamplerOutput(latents=z, timesteps=timesteps, nfe=len(timesteps) * (2 if use_cfg else 1))


# --------------------------------------------------------------------------- the teachers' own samplers


@dataclass(frozen=True)
class DDIMPlan:
    """One DDIM trajectory, in sampling order (t descending): what a teacher's own sampler does.

    Step i goes from abar = `alphas[i]` at `timesteps[i]` to `alphas_prev[i]`, with
    sigma_i = eta sqrt((1 - abar_prev) / (1 - abar) (1 - abar / abar_prev)) (DDIM's eq. 16; eta 1
    is DDPM-like ancestral noise). `x0_scale` / `x0_scale_prev` (LVDM's `use_scale`): the x0
    prediction is divided by the scale at t and re-multiplied by the scale at the previous step.
    """

    timesteps: tuple[int, ...]
    alphas: tuple[float, ...]
    alphas_prev: tuple[float, ...]
    eta: float = 0.0
    x0_scale: tuple[float, ...] | None = None
    x0_scale_prev: tuple[float, ...] | None = None

    def sigmas(self) -> list[float]:
        return [
            self.eta * math.sqrt((1 - ap) / (1 - a) * (1 - a / ap)) for a, ap in zip(self.alphas, self.alphas_prev)
        ]


def lvdm_scale_array(
    num_train_timesteps: int = 1000, scale_a: float = 1.0, scale_b: float = 0.7, mid_step: int = 400, fix_scale_bug: bool = False
) -> np.ndarray:
    """LVDM's `scale_arr` (LatentDiffusion with use_scale): linspace(scale_a, scale_b, mid_step)
    then scale_b; without `fix_scale_bug` the tail has T entries (1,400 in all), indexed by t."""
    tail = num_train_timesteps - mid_step if fix_scale_bug else num_train_timesteps
    return np.concatenate([np.linspace(scale_a, scale_b, mid_step), np.full(tail, scale_b)])


def lvdm_ddim_plan(
    schedule: NoiseSchedule,
    num_steps: int = 50,
    eta: float = 1.0,
    use_scale: bool = True,
    scale_a: float = 1.0,
    scale_b: float = 0.7,
    mid_step: int = 400,
    fix_scale_bug: bool = False,
) -> DDIMPlan:
    """VideoCrafter's DDIMSampler ("uniform" discretisation), as its text-to-video script runs it.

    Timesteps arange(0, T, T // n) + 1 (1, 21, ..., 981 for 50 steps); the previous abar of
    timestep i is abar of timestep i - 1, and abar_0 for the first one (so the chain ends one
    step short of clean, at t = 0). With `use_scale`, x0 scales from `lvdm_scale_array`.
    """
    T = schedule.num_train_timesteps
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be in [1, {T}], got {num_steps}")
    ac = schedule.alphas_cumprod.double().numpy()
    ts = np.arange(0, T, T // num_steps) + 1
    alphas = ac[ts]
    alphas_prev = np.concatenate([[ac[0]], ac[ts[:-1]]])
    scale = scale_prev = None
    if use_scale:
        arr = lvdm_scale_array(T, scale_a, scale_b, mid_step, fix_scale_bug)
        scale = arr[ts]
        scale_prev = np.concatenate([[arr[0]], arr[ts[:-1]]])
    rev = slice(None, None, -1)
    return DDIMPlan(
        timesteps=tuple(int(t) for t in ts[rev]),
        alphas=tuple(float(a) for a in alphas[rev]),
        alphas_prev=tuple(float(a) for a in alphas_prev[rev]),
        eta=float(eta),
        x0_scale=None if scale is None else tuple(float(s) for s in scale[rev]),
        x0_scale_prev=None if scale_prev is None else tuple(float(s) for s in scale_prev[rev]),
    )


def diffusers_ddim_plan(scheduler_config: dict[str, Any], schedule: NoiseSchedule, num_steps: int = 50, eta: float = 0.0) -> DDIMPlan:
    """diffusers' DDIMScheduler as configured by a model folder's `scheduler_config.json`.

    Timesteps by `timestep_spacing` ("leading" with `steps_offset`, the default; "trailing";
    "linspace"); the previous timestep is t - T // n, and below 0 abar is `final_alpha_cumprod`
    (1 with `set_alpha_to_one`, else abar_0). Options that change the update itself
    (clip_sample, thresholding, non-eps prediction, zero-SNR betas) are refused, not ignored.
    """
    cls = scheduler_config.get("_class_name", "DDIMScheduler")
    if cls != "DDIMScheduler":
        raise ValueError(f"scheduler_config.json names {cls}; only DDIMScheduler is supported")
    unsupported = {
        "clip_sample": scheduler_config.get("clip_sample", True),
        "thresholding": scheduler_config.get("thresholding", False),
        "rescale_betas_zero_snr": scheduler_config.get("rescale_betas_zero_snr", False),
    }
    bad = [k for k, v in unsupported.items() if v]
    if scheduler_config.get("prediction_type", "epsilon") != "epsilon":
        bad.append("prediction_type=" + str(scheduler_config.get("prediction_type")))
    if bad:
        raise ValueError(f"scheduler_config.json sets {', '.join(bad)}: not supported by the native DDIM sampler")
    T = int(scheduler_config.get("num_train_timesteps", 1000))
    if T != schedule.num_train_timesteps:
        raise ValueError(f"scheduler_config.json has {T} train timesteps, the teacher's schedule {schedule.num_train_timesteps}")
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be in [1, {T}], got {num_steps}")
    spacing = scheduler_config.get("timestep_spacing", "leading")
    offset = int(scheduler_config.get("steps_offset", 0))
    ratio = T // num_steps
    if spacing == "leading":
        ts = (np.arange(0, num_steps) * ratio).round()[::-1].astype(np.int64) + offset
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / num_steps)).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, num_steps).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"scheduler_config.json: unknown timestep_spacing {spacing!r}")
    ac = schedule.alphas_cumprod.double().numpy()
    final = 1.0 if scheduler_config.get("set_alpha_to_one", True) else float(ac[0])
    prev = ts - ratio
    return DDIMPlan(
        timesteps=tuple(int(t) for t in ts),
        alphas=tuple(float(ac[t]) for t in ts),
        alphas_prev=tuple(float(ac[p]) if p >= 0 else final for p in prev),
        eta=float(eta),
    )


@torch.no_grad()
def planned_ddim_sample(
    teacher: nn.Module,
    text_embedding: torch.Tensor,
    uncond_embedding: torch.Tensor,
    shape: Sequence[int],
    plan: DDIMPlan,
    guidance_scale: float,
    generator: Generators = None,
    latents: torch.Tensor | None = None,
    unet_kwargs: dict[str, Any] | None = None,
    cfg_batching: str = "auto",
) -> SamplerOutput:
    """A teacher's own DDIM sampler (`lvdm_ddim_plan` / `diffusers_ddim_plan`) with CFG
    eps = eps_u + g (eps_c - eps_u); fresh per-video noise wherever sigma > 0."""
    device, dtype = text_embedding.device, text_embedding.dtype
    b = shape[0]
    use_cfg = guidance_scale > 1.0
    uncond = uncond_embedding.to(device=device, dtype=dtype).expand(b, *text_embedding.shape[1:])
    z = latents.to(device=device, dtype=dtype) if latents is not None else randn_per_video(shape, generator, device, dtype)
    sigmas = plan.sigmas()
    with cached_dtype(teacher):
        for i, t in enumerate(plan.timesteps):
            t_batch = torch.full((b,), t, device=device, dtype=torch.long)
            eps = _guided_noise(teacher, z, t_batch, text_embedding, uncond, guidance_scale, unet_kwargs, cfg_batching)
            a_t, a_prev, sigma = plan.alphas[i], plan.alphas_prev[i], sigmas[i]
            x0 = (z.float() - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            if plan.x0_scale is not None:
                x0 = x0 / plan.x0_scale[i] * plan.x0_scale_prev[i]
            z_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
            if sigma > 0:
                z_prev = z_prev + sigma * randn_per_video(z.shape, generator, device, torch.float32)
            z = z_prev.to(dtype)
    return SamplerOutput(latents=z, timesteps=list(plan.timesteps), nfe=len(plan.timesteps) * (2 if use_cfg else 1))


def native_teacher_plan(native: dict[str, Any], schedule: NoiseSchedule, num_steps: int | None = None) -> DDIMPlan:
    """The DDIMPlan of a teacher's `native_sampler` description (see `TextToVideoModel`)."""
    steps = int(num_steps if num_steps is not None else native["steps"])
    kind = native.get("sampler")
    if kind == "lvdm-ddim":
        return lvdm_ddim_plan(
            schedule, steps, eta=float(native["eta"]), use_scale=bool(native.get("use_scale", False)),
            scale_a=float(native.get("scale_a", 1.0)), scale_b=float(native.get("scale_b", 0.7)),
            mid_step=int(native.get("mid_step", 400)), fix_scale_bug=bool(native.get("fix_scale_bug", False)),
        )
    if kind == "diffusers-ddim":
        return diffusers_ddim_plan(native["scheduler_config"], schedule, steps, eta=float(native.get("eta", 0.0)))
    raise ValueError(f"unknown native sampler {kind!r}")
