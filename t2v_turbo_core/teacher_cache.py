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

from torch import nn

from t2v_turbo_core.distillation import ConsistencyDistiller, _eval_mode, consistency_term
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
    timestep_cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """The distillation target f_{theta^-}(z_hat_{t_n}, w, c, t_n) from stored teacher eps.

    The same computation as `ConsistencyDistiller`'s live-teacher target (theta^- in eval
    mode, under no_grad, EMA swapped in if the distiller has one), with the teacher forward
    replaced by the record. `timestep_cond` replaces emb(w) as the student's condition (a v2
    student with a motion input: concat[emb(w), emb(m)]). Returns [B, C, F, h, w].
    """
    cfg, schedule = distiller.config, distiller.schedule
    z_start = batch.noisy_latent
    b, device, dtype, nd = z_start.shape[0], z_start.device, z_start.dtype, z_start.ndim
    grid = ddim_grid(cfg.skip, schedule.num_train_timesteps)
    t_start = grid[batch.index].to(device)
    t_end = (t_start - cfg.skip).clamp(min=0)
    w = w.to(device)
    w_emb = guidance_scale_embedding(w, cfg.guidance_embedding_dim).to(device=device, dtype=dtype)
    if timestep_cond is not None:
        w_emb = timestep_cond.to(device=device, dtype=dtype)
    text = batch.prompt_embedding.to(device)
    with torch.no_grad(), distiller._autocast(device), _eval_mode(distiller.student):
        z_end = teacher_ode_step(
            schedule, z_start, t_start, t_end, batch.eps_cond, batch.eps_uncond, w,
            batch.motion_score, batch.index, batch.use_motion_guide, motion_gs, tau, len(grid), coefficient,
        ).to(dtype)
        swap = distiller.ema.swapped_in() if distiller.ema is not None else contextlib.nullcontext()
        with swap:
            eps_target = distiller.student_forward(z_end, t_end, text, w_emb, grad=False).float()
        x0_target = schedule.pred_original_sample(eps_target, t_end, z_end)
        c_skip, c_out = boundary_scalings(t_end, cfg.sigma_data, cfg.timestep_scaling)
        shape = (b, *([1] * (nd - 1)))
        return c_skip.reshape(shape).to(dtype) * z_end + c_out.reshape(shape).to(dtype) * x0_target


class CachedConsistencyDistiller(ConsistencyDistiller):
    """T2V-Turbo-v2's training step: Algorithm 1 with the teacher forward read from records.

    Per step: w ~ U[w_min, w_max] (drawn first from the step's generator, after the released
    weighting's terms draw), LCM-form CFG on the stored eps, motion guidance
    eps -= motion_gs c(t) score where the record is a motion video and its index >= (1 - tau) N,
    one DDIM step, theta^- (EMA or online) there; the online prediction f_theta at the stored
    z_{t_{n+k}}; the same distance and reward terms as `ConsistencyDistiller.step`.

    A student with the v2 motion input (`motion_condition.add_motion_condition`) gets m (motion_gs
    where the guidance term is active, else 0) in both the online prediction and the target, as
    the released script does; a student without one is trained on the guided target alone.

    Data decoupling (`reward_prompts`, one per video, "" where a video has none): the rewards
    are computed only on the videos that have a short caption and are scored against it; the
    consistency term always uses the stored (long-caption) embedding. A batch without any
    short caption gets its rewards on the long captions (`prompts`).
    """

    def __init__(self, student: nn.Module, schedule: NoiseSchedule, config: Any, vae: Any = None, image_reward: Any = None,
                 video_reward: Any = None, unet_kwargs: dict[str, Any] | None = None, motion_gs: float = 0.05, tau: float = 0.5,
                 coefficient: str = "released", teacher: nn.Module | None = None):
        # No unconditional embedding is needed: the stored uncond eps replaces the teacher call.
        super().__init__(student, schedule, torch.zeros(()), config, teacher=teacher, vae=vae, image_reward=image_reward,
                         video_reward=video_reward, unet_kwargs=unet_kwargs)
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau (the guided fraction of the grid) must be in [0, 1], got {tau}")
        if motion_gs < 0:
            raise ValueError(f"motion_gs must be >= 0, got {motion_gs}")
        self.motion_gs, self.tau, self.coefficient = float(motion_gs), float(tau), coefficient
        from t2v_turbo_core.motion_condition import has_motion_condition

        self.motion_cond = has_motion_condition(student)

    def student_condition(self, batch: TeacherTargetBatch, w: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """emb(w), or concat[emb(w), emb(m)] for a student with the motion input."""
        from t2v_turbo_core.motion_condition import motion_cond_values, with_motion_cond

        dim = self.config.guidance_embedding_dim
        w_emb = guidance_scale_embedding(w, dim).to(device=device, dtype=dtype)
        if not self.motion_cond:
            return w_emb
        m = motion_cond_values(batch.index, batch.use_motion_guide, self.motion_gs, len(self.grid), self.tau)
        return with_motion_cond(w_emb, m, dim)

    def step_from_records(
        self,
        batch: TeacherTargetBatch,
        prompts: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        reward_prompts: Sequence[str] | None = None,
    ) -> Any:
        from t2v_turbo_core.distillation import DistillationOutput
        from t2v_turbo_core.rewards import mixed_reward_loss

        cfg, schedule = self.config, self.schedule
        z_start = batch.noisy_latent.detach()
        b, device, dtype, nd = z_start.shape[0], z_start.device, z_start.dtype, z_start.ndim
        terms = self.draw_terms(generator)
        image_reward = self.image_reward if terms != "vid" else None
        video_reward = self.video_reward if terms != "cd_img" else None
        w = (torch.rand((b,), generator=generator) * (cfg.w_max - cfg.w_min) + cfg.w_min).to(device)
        cond = self.student_condition(batch, w, device, dtype)
        t_start = self.grid[batch.index].to(device)
        text = batch.prompt_embedding.to(device).detach()

        # The target first: the EMA swap writes into the student's parameters (see the parent).
        target = None
        if terms != "vid":
            target = consistency_target_from_records(self, batch, w, self.motion_gs, self.tau, self.coefficient, timestep_cond=cond)
        with self._autocast(device):
            eps = self.student_forward(z_start, t_start, text, cond)
        x0 = schedule.pred_original_sample(eps.float(), t_start, z_start)
        c_skip, c_out = boundary_scalings(t_start, cfg.sigma_data, cfg.timestep_scaling)
        shape = (b, *([1] * (nd - 1)))
        model_pred = c_skip.reshape(shape).to(dtype) * z_start + c_out.reshape(shape).to(dtype) * x0

        loss, loss_cd = consistency_term(model_pred, target, cfg)
        image_score = video_score = None
        loss_reward = loss.new_zeros(())
        if image_reward is not None or video_reward is not None:
            if prompts is None or len(prompts) != b:
                raise ValueError("reward feedback needs one prompt per video")
            chosen, texts = list(range(b)), list(prompts)
            if reward_prompts is not None:
                if len(reward_prompts) != b:
                    raise ValueError("reward_prompts needs one (possibly empty) short caption per video")
                short = [i for i, p in enumerate(reward_prompts) if p]
                if short:
                    chosen, texts = short, [reward_prompts[i] for i in short]
            with self._autocast(device):
                reward_terms = mixed_reward_loss(
                    model_pred[chosen].to(dtype), texts, self.vae, image_reward=image_reward, video_reward=video_reward,
                    beta_img=cfg.beta_img, beta_vid=cfg.beta_vid, image_frames=cfg.image_reward_frames,
                    video_frames=cfg.video_reward_frames, generator=generator,
                )
            loss_reward = reward_terms.loss.float()
            loss = loss + loss_reward
            image_score, video_score = reward_terms.image_reward, reward_terms.video_reward
        return DistillationOutput(
            loss=loss, loss_cd=loss_cd.detach(), loss_reward=loss_reward.detach(),
            image_reward=None if image_score is None else image_score.detach(),
            video_reward=None if video_score is None else video_score.detach(),
            start_timesteps=t_start.detach(), guidance_scale=w.detach(), model_pred=model_pred.detach(), terms=terms,
        )
