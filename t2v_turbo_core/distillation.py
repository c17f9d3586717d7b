"""Video consistency distillation with mixed reward feedback (T2V-Turbo, Algorithm 1).

One training step, given clean latents z and text c:
  n ~ U{grid}, w ~ U[w_min, w_max], z_{t_{n+k}} = forward process(z, noise)
  teacher (frozen, CFG in the LCM form) solves one DDIM step z_{t_{n+k}} -> z_hat_{t_n}
  target  = f_{theta^-}(z_hat_{t_n}, w, c, t_n)            (no grad; EMA or online student)
  pred    = f_theta(z_{t_{n+k}}, w, c, t_{n+k})            (the single-step prediction)
  L = d(pred, target) - beta_img mean R_img(D(pred)) - beta_vid mean R_vid(D(pred))
The reward terms backpropagate through the VAE decoder into the single-step prediction
only; no gradient ever flows through a sampling chain.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from t2v_turbo_core.losses import distance
from t2v_turbo_core.lora import LORA_FORWARDS, EMATarget, adapters_disabled, merged_lora_forward, trainable_parameters, tuner_layers
from t2v_turbo_core.models import cached_dtype, predict_noise
from t2v_turbo_core.rewards import DEFAULT_IMAGE_REWARD_FRAMES, ImageTextReward, VideoTextReward, mixed_reward_loss
from t2v_turbo_core.schedule import (
    NoiseSchedule,
    boundary_scalings,
    ddim_grid,
    ddim_step,
    guidance_scale_embedding,
)


REWARD_WEIGHTINGS = ("paper", "released")
# The released code's split: 6 of its 8 processes compute CD + image reward, 2 the video reward.
RELEASED_CD_FRACTION = 6 / 8


def effective_loss_weights(config: "DistillationConfig") -> tuple[float, float, float]:
    """(CD, image reward, video reward) weights of the expected gradient, relative to CD.

    paper: (1, beta_img, beta_vid). released: the expected update is
    p * (grad L_CD - beta_img grad R_img) + (1 - p) * (-beta_vid grad R_vid) with p = 6/8, so
    relative to CD the weights are (1, beta_img, beta_vid (1 - p) / p). Without a video reward
    there is nothing to split and every step is CD (+ image reward) in both conventions.
    """
    if config.reward_weighting == "released" and config.beta_vid > 0:
        p = RELEASED_CD_FRACTION
        return 1.0, config.beta_img, config.beta_vid * (1 - p) / p
    return 1.0, config.beta_img, config.beta_vid


@dataclass(frozen=True)
class DistillationConfig:
    """Hyper-parameters of Algorithm 1 (defaults: the paper's VideoCrafter2 setting)."""

    skip: int = 20  # k, in raw timesteps: one step of the N = 50 DDIM grid (v2: 5, N = 200)
    w_min: float = 5.0
    w_max: float = 15.0
    guidance_embedding_dim: int = 256
    loss_type: str = "huber"
    huber_c: float = 0.001
    sigma_data: float = 0.5
    timestep_scaling: float = 10.0
    # theta^-: "ema" is the paper's Algorithm 1 (mu = 0.95 as in LCM); "online" is the public
    # LoRA recipe, which uses the student itself under no_grad.
    target: str = "ema"
    ema_decay: float = 0.95
    beta_img: float = 1.0
    beta_vid: float = 2.0
    # How the three loss terms are combined:
    # "paper": every sample's loss is L_CD - beta_img R_img - beta_vid R_vid (the paper's Eq.);
    # "released": T2V-Turbo's released training splits the terms across 8 processes: 6 compute
    # L_CD - beta_img R_img, 2 compute only -beta_vid R_vid, and DDP averages their gradients.
    # Emulated per step: with probability RELEASED_CD_FRACTION the step is CD + image reward,
    # else the video reward alone (drawn from the step's generator). In expectation the
    # weights relative to CD are 1 : beta_img : beta_vid / 3 (1 : 1 : 0.67 for VC2).
    reward_weighting: str = "paper"
    image_reward_frames: int = DEFAULT_IMAGE_REWARD_FRAMES  # M (paper: 6; released v1 code: 5)
    video_reward_frames: int | None = None  # None: the video reward model's own num_frames
    mixed_precision: str = "no"  # "no" (fp32) or "bf16" (autocast on CUDA)
    # How the student's LoRA layers compute their outputs (`lora.merged_lora_forward`): "merged"
    # applies W + s B A in one product wherever that is exact (no LoRA dropout drawn: every
    # no-grad target pass; the trained pass when lora_dropout = 0), "adapter" is peft's layer
    # forward everywhere (W x + s B A x: runs before this key existed). Same function up to
    # float rounding; "merged" is the faster.
    lora_forward: str = "merged"

    def validate(self, num_train_timesteps: int = 1000) -> None:
        errors = []
        if self.skip < 1 or num_train_timesteps % self.skip:
            errors.append(f"skip k={self.skip} must be a positive divisor of {num_train_timesteps}")
        if not self.w_min <= self.w_max:
            errors.append(f"w_min={self.w_min} > w_max={self.w_max}")
        if self.loss_type not in ("huber", "l2"):
            errors.append(f"loss_type={self.loss_type!r} (use 'huber' or 'l2')")
        if self.huber_c <= 0:
            errors.append(f"huber_c={self.huber_c} must be > 0")
        if self.target not in ("ema", "online"):
            errors.append(f"target={self.target!r} (use 'ema' or 'online')")
        if not 0.0 <= self.ema_decay < 1.0:
            errors.append(f"ema_decay={self.ema_decay} must be in [0, 1)")
        if self.beta_img < 0 or self.beta_vid < 0:
            errors.append("beta_img and beta_vid must be >= 0")
        if self.reward_weighting not in REWARD_WEIGHTINGS:
            errors.append(f"reward_weighting={self.reward_weighting!r} (use {' or '.join(map(repr, REWARD_WEIGHTINGS))})")
        if self.image_reward_frames < 1:
            errors.append(f"image_reward_frames={self.image_reward_frames} must be >= 1")
        if self.mixed_precision not in ("no", "bf16"):
            errors.append(f"mixed_precision={self.mixed_precision!r} (use 'no' or 'bf16')")
        if self.lora_forward not in LORA_FORWARDS:
            errors.append(f"lora_forward={self.lora_forward!r} (use {' or '.join(map(repr, LORA_FORWARDS))})")
        if errors:
            raise ValueError("invalid distillation config: " + "; ".join(errors))


@dataclass
class DistillationOutput:
    """Loss terms of one step; `loss` carries the graph, the rest are detached for logging."""

    loss: torch.Tensor
    loss_cd: torch.Tensor
    loss_reward: torch.Tensor
    image_reward: torch.Tensor | None
    video_reward: torch.Tensor | None
    start_timesteps: torch.Tensor
    guidance_scale: torch.Tensor
    model_pred: torch.Tensor = field(repr=False)
    # Which terms this step computed: "all" (paper), or under the released weighting
    # "cd_img" (L_CD and the image reward) or "vid" (the video reward alone; loss_cd is NaN).
    terms: str = "all"
    # The frozen teacher's pass of this step (`TeacherRecord`), for a caller that shares it with
    # other students trained on the same batches and draws; None when the step ran none ("vid").
    teacher_record: "TeacherRecord | None" = field(default=None, repr=False)

    def as_log(self) -> dict[str, float]:
        log = {"loss": float(self.loss.detach()), "loss_cd": float(self.loss_cd), "loss_reward": float(self.loss_reward)}
        log["reward_img"] = float(self.image_reward) if self.image_reward is not None else float("nan")
        log["reward_vid"] = float(self.video_reward) if self.video_reward is not None else float("nan")
        return log


@dataclass(frozen=True)
class TeacherRecord:
    """The frozen teacher's [conditional; unconditional] noise prediction at one step's z_{t_{n+k}}.

    It depends only on the teacher's weights, the step's z_{t_{n+k}} and t_{n+k}, and the text,
    never on the student: the variants of an ablation that see the same batches and the same
    step draws (one data seed) need the teacher's pass once, not once per variant. `step`
    uses a record only when its own z_{t_{n+k}}, t_{n+k} and text equal the record's exactly,
    so a stale or foreign record is recomputed, never trusted.
    """

    z_start: torch.Tensor
    t_start: torch.Tensor
    text_embedding: torch.Tensor
    eps: torch.Tensor  # [2B, ...]: conditional first, then unconditional (one batched call)

    def matches(self, z_start: torch.Tensor, t_start: torch.Tensor, text_embedding: torch.Tensor) -> bool:
        return all(a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu()) for a, b in
                   ((self.z_start, z_start), (self.t_start, t_start), (self.text_embedding, text_embedding)))


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module, submodules: Sequence[nn.Module] | None = None):
    """Dropout off for the teacher's ODE step and the target, whatever mode the caller trains in.

    The teacher and theta^- define the regression target; with the student's base weights
    shared, train mode would otherwise apply the UNet's own dropout (diffusers' temporal convs
    use p = 0.1) to the teacher's prediction. `submodules`: every module of `modules`, when the
    caller has listed them already (the distiller lists them once, not at every step).
    """
    if submodules is None:
        submodules = [m for mod in modules if isinstance(mod, nn.Module) for m in mod.modules()]
    flags = [(m, m.training) for m in submodules]
    for mod in modules:
        if isinstance(mod, nn.Module):
            mod.eval()
    try:
        yield
    finally:
        for m, was in flags:
            m.training = was


def _freeze(module: Any) -> None:
    if isinstance(module, nn.Module):
        module.requires_grad_(False)


def _randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Drawn on the CPU so that a seed gives the same numbers on every device.
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def consistency_term(model_pred: torch.Tensor, target: torch.Tensor | None, cfg: "DistillationConfig") -> tuple[torch.Tensor, torch.Tensor]:
    """(loss so far, loss_cd): d(f_theta, target) under the configured distance; with no target
    (the released code's video-reward-only step) the loss starts at zero and loss_cd is NaN, so
    the logs show the step had no consistency term."""
    if target is None:
        return model_pred.new_zeros(()), torch.full((), float("nan"))
    loss_cd = distance(model_pred, target, cfg.loss_type, cfg.huber_c)
    return loss_cd, loss_cd


class ConsistencyDistiller:
    """Computes the T2V-Turbo loss for a student (a UNet with LoRA + w projection).

    `teacher=None` uses the student with its adapters disabled and no w embedding, i.e. the
    frozen teacher weights, without a second copy of the UNet (LCM-LoRA style). Pass a
    separate module when the student is fully fine-tuned.
    The caller owns the optimiser: `loss.backward()`, clip, `optimizer.step()`, then
    `update_target()` (the EMA of Algorithm 1).
    """

    def __init__(
        self,
        student: nn.Module,
        schedule: NoiseSchedule,
        uncond_embedding: torch.Tensor,
        config: DistillationConfig = DistillationConfig(),
        teacher: nn.Module | None = None,
        vae: Any = None,
        image_reward: ImageTextReward | None = None,
        video_reward: VideoTextReward | None = None,
        unet_kwargs: dict[str, Any] | None = None,
    ):
        config.validate(schedule.num_train_timesteps)
        if (image_reward is not None or video_reward is not None) and vae is None:
            raise ValueError("reward feedback needs the VAE to decode the single-step prediction")
        self.student = student
        self.schedule = schedule
        self.config = config
        self.teacher = teacher
        self.vae = vae
        self.image_reward = image_reward if config.beta_img > 0 else None
        self.video_reward = video_reward if config.beta_vid > 0 else None
        self.unet_kwargs = dict(unet_kwargs or {})
        self.uncond_embedding = uncond_embedding.detach()
        self.grid = ddim_grid(config.skip, schedule.num_train_timesteps)
        for frozen in (teacher, getattr(vae, "vae", vae), image_reward, video_reward):
            _freeze(frozen)
        params = trainable_parameters(student)
        if not params:
            raise ValueError("the student has no trainable parameters (add LoRA / the w projection first)")
        self.ema = EMATarget(params, config.ema_decay) if config.target == "ema" else None
        # Module lists walked at every step (eval mode for the target, the adapters to disable),
        # made once per student / teacher object (`bench train` swaps in a DDP-wrapped student);
        # the module tree is fixed while it trains (LoRA is merged only after training).
        self._module_lists: tuple[tuple[int, int], list[nn.Module], list[nn.Module], bool] | None = None

    def _lists(self) -> tuple[list[nn.Module], list[nn.Module], bool]:
        """(every module of student and teacher, the student's LoRA layers, whether any of the
        student's modules checkpoints its activations)."""
        key = (id(self.student), id(self.teacher))
        if self._module_lists is None or self._module_lists[0] != key:
            everything = [m for mod in (self.student, self.teacher) if isinstance(mod, nn.Module) for m in mod.modules()]
            student = self.student if isinstance(self.student, nn.Module) else None
            checkpointed = student is not None and any(getattr(m, "gradient_checkpointing", False) is True
                                                       for m in student.modules())
            self._module_lists = (key, everything, tuner_layers(student) if student is not None else [], checkpointed)
        return self._module_lists[1], self._module_lists[2], self._module_lists[3]

    def student_forward(self, z: torch.Tensor, t: torch.Tensor, text_embedding: torch.Tensor, cond: torch.Tensor | None,
                        grad: bool = True) -> torch.Tensor:
        """The student's eps at (z, t, text, w embedding), its LoRA layers computed as
        `config.lora_forward` says. A trained pass under gradient checkpointing keeps peft's
        forward: the backward's recomputation runs after this call, outside the merged forward."""
        _, layers, checkpointed = self._lists()
        merged = self.config.lora_forward == "merged" and layers and not (grad and checkpointed)
        with merged_lora_forward(self.student, layers=layers) if merged else contextlib.nullcontext():
            return predict_noise(self.student, z, t, text_embedding, cond, **self.unet_kwargs)

    def _autocast(self, device: torch.device):
        if self.config.mixed_precision == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def draw_terms(self, generator: torch.Generator | None = None) -> str:
        """Which loss terms this step computes: "all" (paper), else "cd_img" / "vid".

        Under the released weighting with a video reward, one uniform draw from the step's
        own generator (so it is reproducible from the step seed) makes the step CD + image
        reward with probability 6/8, else the video reward alone, the expected update of the
        released code's 6 + 2 processes.
        """
        if self.config.reward_weighting != "released" or self.video_reward is None:
            return "all"
        return "cd_img" if float(torch.rand((), generator=generator)) < RELEASED_CD_FRACTION else "vid"

    def _teacher_context(self):
        return adapters_disabled(self.student, layers=self._lists()[1]) if self.teacher is None else contextlib.nullcontext()

    def step(
        self,
        latents: torch.Tensor,
        text_embedding: torch.Tensor,
        prompts: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        teacher_record: TeacherRecord | None = None,
    ) -> DistillationOutput:
        """One step's loss terms. `teacher_record`: the teacher's pass of this same step, made by
        an earlier step on the same batch and draws (`DistillationOutput.teacher_record`); used
        only where it matches this step's z_{t_{n+k}}, t_{n+k} and text exactly, else recomputed.
        """
        # The UNets' dtype once per step, not at each of the three forwards (`cached_dtype`).
        with cached_dtype(self.student, self.teacher):
            return self._step(latents, text_embedding, prompts, generator, teacher_record)

    def _step(self, latents, text_embedding, prompts, generator, teacher_record=None) -> DistillationOutput:
        cfg = self.config
        # The text encoder is frozen in the method: never let a caller's graph reach it.
        latents, text_embedding = latents.detach(), text_embedding.detach()
        b, device, dtype = latents.shape[0], latents.device, latents.dtype
        nd = latents.ndim

        terms = self.draw_terms(generator)
        image_reward = self.image_reward if terms != "vid" else None
        video_reward = self.video_reward if terms != "cd_img" else None

        index = torch.randint(0, len(self.grid), (b,), generator=generator)
        t_start = self.grid[index].to(device)
        t_end = (t_start - cfg.skip).clamp(min=0)
        noise = _randn(latents.shape, generator, device, dtype)
        z_start = self.schedule.add_noise(latents, noise, t_start)
        w = (torch.rand((b,), generator=generator) * (cfg.w_max - cfg.w_min) + cfg.w_min).to(device)
        w_emb = guidance_scale_embedding(w, cfg.guidance_embedding_dim).to(device=device, dtype=dtype)
        w_b = w.reshape(b, *([1] * (nd - 1))).to(dtype)

        def bc(t):
            c_skip, c_out = boundary_scalings(t, cfg.sigma_data, cfg.timestep_scaling)
            return c_skip.reshape(b, *([1] * (nd - 1))).to(dtype), c_out.reshape(b, *([1] * (nd - 1))).to(dtype)

        c_skip_start, c_out_start = bc(t_start)
        c_skip_end, c_out_end = bc(t_end)
        uncond = self.uncond_embedding.to(device=device, dtype=text_embedding.dtype).expand(b, *text_embedding.shape[1:])

        # Teacher and target first: the EMA swap writes into the student's parameters, which
        # must not happen after they have been used in the graph of this step.
        target = record = None
        if terms != "vid":
            target, record = self._target_with(teacher_record, z_start, t_start, t_end, text_embedding, uncond, w_b, w_emb,
                                               c_skip_end, c_out_end, dtype, device)

        with self._autocast(device):
            eps = self.student_forward(z_start, t_start, text_embedding, w_emb)
        x0 = self.schedule.pred_original_sample(eps.float(), t_start, z_start)
        model_pred = c_skip_start * z_start + c_out_start * x0

        loss, loss_cd = consistency_term(model_pred, target, cfg)
        image_score = video_score = None
        loss_reward = loss.new_zeros(())
        if image_reward is not None or video_reward is not None:
            if prompts is None or len(prompts) != b:
                raise ValueError("reward feedback needs one prompt per video")
            with self._autocast(device):
                reward_terms = mixed_reward_loss(
                    model_pred.to(dtype),
                    prompts,
                    self.vae,
                    image_reward=image_reward,
                    video_reward=video_reward,
                    beta_img=cfg.beta_img,
                    beta_vid=cfg.beta_vid,
                    image_frames=cfg.image_reward_frames,
                    video_frames=cfg.video_reward_frames,
                    generator=generator,
                )
            loss_reward = reward_terms.loss.float()
            loss = loss + loss_reward
            image_score, video_score = reward_terms.image_reward, reward_terms.video_reward

        return DistillationOutput(
            loss=loss,
            loss_cd=loss_cd.detach(),
            loss_reward=loss_reward.detach(),
            image_reward=None if image_score is None else image_score.detach(),
            video_reward=None if video_score is None else video_score.detach(),
            start_timesteps=t_start.detach(),
            guidance_scale=w.detach(),
            model_pred=model_pred.detach(),
            terms=terms,
            teacher_record=record,
        )

    def _teacher_eps(self, z_start, t_start, text_embedding, uncond) -> torch.Tensor:
        """The frozen teacher's conditional and unconditional eps at z_{t_{n+k}}, in one call.
        Called inside `_target_with`'s no-grad, eval-mode context."""
        net = self.student if self.teacher is None else self.teacher
        with self._teacher_context():
            return predict_noise(
                net,
                torch.cat([z_start, z_start]),
                torch.cat([t_start, t_start]),
                torch.cat([text_embedding, uncond]),
                None,
                **self.unet_kwargs,
            ).float()

    def _target(self, z_start, t_start, t_end, text_embedding, uncond, w_b, w_emb, c_skip_end, c_out_end, dtype, device):
        """The teacher's one DDIM step z_{t_{n+k}} -> z_hat_{t_n}, then f_{theta^-} there (no grad)."""
        return self._target_with(None, z_start, t_start, t_end, text_embedding, uncond, w_b, w_emb, c_skip_end, c_out_end,
                                 dtype, device)[0]

    def _target_with(self, record, z_start, t_start, t_end, text_embedding, uncond, w_b, w_emb, c_skip_end, c_out_end, dtype,
                     device) -> tuple[torch.Tensor, TeacherRecord]:
        """(`_target`, the teacher's pass as a `TeacherRecord`): from `record` where it is this
        step's (same z_{t_{n+k}}, t_{n+k}, text), else computed here."""
        with torch.no_grad(), self._autocast(device), _eval_mode(self.student, self.teacher, submodules=self._lists()[0]):
            if record is None or not record.matches(z_start, t_start, text_embedding):
                record = TeacherRecord(z_start.detach(), t_start.detach(), text_embedding.detach(),
                                       self._teacher_eps(z_start, t_start, text_embedding, uncond))
            eps_c, eps_u = record.eps.to(device).chunk(2)
            x0_c = self.schedule.pred_original_sample(eps_c, t_start, z_start)
            x0_u = self.schedule.pred_original_sample(eps_u, t_start, z_start)
            # LCM's form of classifier-free guidance, applied to both x0 and eps.
            x0_cfg = x0_c + w_b * (x0_c - x0_u)
            eps_cfg = eps_c + w_b * (eps_c - eps_u)
            z_end = ddim_step(self.schedule, x0_cfg, eps_cfg, t_end).to(dtype)

            swap = self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()
            with swap:
                eps_target = self.student_forward(z_end, t_end, text_embedding, w_emb, grad=False).float()
            x0_target = self.schedule.pred_original_sample(eps_target, t_end, z_end)
            return c_skip_end * z_end + c_out_end * x0_target, record

    def update_target(self) -> None:
        """Algorithm 1's theta^- <- stopgrad(mu theta^- + (1 - mu) theta); no-op for 'online'."""
        if self.ema is not None:
            self.ema.update()
