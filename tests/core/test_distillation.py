"""Algorithm 1 on tiny random models: gradient routing, learning, reward feedback, memory."""

import hashlib

import pytest
import torch
from torch import nn

from t2v_turbo_core.distillation import ConsistencyDistiller, DistillationConfig
from t2v_turbo_core.lora import LoraSettings, trainable_parameters
from t2v_turbo_core.memory import saved_tensor_bytes
from t2v_turbo_core.models import VideoVAE
from t2v_turbo_core.sampling import consistency_sample
from t2v_turbo_core.schedule import NoiseSchedule
from t2v_turbo_core.student import student_from_diffusers_unet

from .conftest import TEXT_DIM

LATENT_SHAPE = (4, 3, 4, 4)  # C, F, h, w -> 8x8 pixels through the tiny VAE


class ToyTextEncoder(nn.Module):
    """A trainable-looking text tower, to prove the method never sends gradients into it."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(TEXT_DIM, TEXT_DIM)

    def forward(self, prompts):
        rows = []
        for p in prompts:
            seed = int(hashlib.sha256(p.encode()).hexdigest()[:8], 16)
            rows.append(torch.randn(5, TEXT_DIM, generator=torch.Generator().manual_seed(seed)))
        return self.proj(torch.stack(rows))


class ToyBrightnessReward(nn.Module):
    """Image-text reward = mean brightness of a learned-looking linear map (differentiable)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, images, prompts):
        assert images.ndim == 4 and len(prompts) == images.shape[0]
        return (images * self.scale.view(1, 3, 1, 1)).mean(dim=(1, 2, 3))


class ToyVideoReward(nn.Module):
    num_frames = 2

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, videos, prompts):
        assert videos.shape[1] == self.num_frames and len(prompts) == videos.shape[0]
        # Rewards temporal change: a video-only signal.
        return self.weight * (videos[:, 1:] - videos[:, :-1]).abs().mean(dim=(1, 2, 3, 4))


class ToyFrameDecoder(nn.Module):
    """A per-frame 'VAE' decoder with real gain (1x1 conv + 2x upsampling).

    A randomly initialised AutoencoderKL maps latents to nearly constant images, which would
    make any pixel reward nearly flat; this one lets a toy reward actually steer the student.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
            self.conv.bias.zero_()

    def decode(self, z):
        return (self.conv(nn.functional.interpolate(z, scale_factor=2)),)


def _setup(tiny_unet3d, tiny_vae, separate_teacher=False, toy_decoder=False, **cfg):
    teacher = tiny_unet3d(seed=0)
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, dropout=0.0))
    vae = VideoVAE(ToyFrameDecoder() if toy_decoder else tiny_vae(seed=1), scaling_factor=1.0)
    text_encoder = ToyTextEncoder()
    config = DistillationConfig(image_reward_frames=2, **cfg)
    distiller = ConsistencyDistiller(
        student,
        NoiseSchedule.scaled_linear(),
        uncond_embedding=text_encoder([""]).detach(),
        config=config,
        teacher=teacher if separate_teacher else None,
        vae=vae,
        image_reward=ToyBrightnessReward(),
        video_reward=ToyVideoReward(),
    )
    return distiller, teacher, vae, text_encoder


@pytest.mark.parametrize("separate_teacher", [False, True])
def test_gradients_reach_only_lora_and_w_projection(tiny_unet3d, tiny_vae, separate_teacher):
    distiller, teacher, vae, text_encoder = _setup(tiny_unet3d, tiny_vae, separate_teacher, beta_img=1.0, beta_vid=2.0)
    prompts = ["a red circle", "a blue square"]
    # Deliberately built with grad: the distiller must cut the text encoder off itself.
    text = text_encoder(prompts)
    latents = torch.randn(2, *LATENT_SHAPE)
    out = distiller.step(latents, text, prompts, generator=torch.Generator().manual_seed(0))
    assert out.image_reward is not None and out.video_reward is not None
    out.loss.backward()

    trainable = trainable_parameters(distiller.student)
    assert all(p.grad is not None for p in trainable.values())
    # With peft's init (B = 0) the A matrices get zero gradient on the first step; B and the
    # w projection must get a real one.
    assert all(p.grad.abs().sum() > 0 for n, p in trainable.items() if "lora_B" in n or "cond_proj" in n)
    for name, p in distiller.student.named_parameters():
        if name not in trainable:
            assert p.grad is None, name
    frozen = [teacher, vae.vae, text_encoder, distiller.image_reward, distiller.video_reward]
    for module in frozen:
        for name, p in module.named_parameters():
            assert p.grad is None, f"{type(module).__name__}.{name} received a gradient"


def test_reward_terms_enter_the_loss_with_their_betas(tiny_unet3d, tiny_vae):
    distiller, _, _, text_encoder = _setup(tiny_unet3d, tiny_vae, beta_img=2.0, beta_vid=3.0)
    prompts = ["a red circle", "a blue square"]
    out = distiller.step(torch.randn(2, *LATENT_SHAPE), text_encoder(prompts), prompts, torch.Generator().manual_seed(1))
    expected = out.loss_cd - 2.0 * out.image_reward - 3.0 * out.video_reward
    torch.testing.assert_close(out.loss.detach(), expected)


def test_vcm_variant_has_no_reward_terms(tiny_unet3d, tiny_vae):
    distiller, _, _, text_encoder = _setup(tiny_unet3d, tiny_vae, beta_img=0.0, beta_vid=0.0)
    out = distiller.step(torch.randn(2, *LATENT_SHAPE), text_encoder(["a", "b"]), ["a", "b"])
    assert out.image_reward is None and out.video_reward is None and float(out.loss_reward) == 0.0
    torch.testing.assert_close(out.loss.detach(), out.loss_cd)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="w_min"):
        DistillationConfig(w_min=9, w_max=5).validate()
    with pytest.raises(ValueError, match="target"):
        DistillationConfig(target="swa").validate()


def _train(distiller, text_encoder, prompts, steps, lr, seed):
    params = list(trainable_parameters(distiller.student).values())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    data_gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        batch = [prompts[int(i)] for i in torch.randint(0, len(prompts), (4,), generator=data_gen)]
        # "Data": smooth latents, a stand-in for VAE-encoded videos.
        latents = torch.randn(4, *LATENT_SHAPE, generator=data_gen) * 0.5
        out = distiller.step(latents, text_encoder(batch), batch, gen)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        distiller.update_target()


def _eval_cd_loss(distiller, text_encoder):
    # A fixed evaluation batch: same latents, timesteps, noise and w before and after.
    latents = torch.randn(8, *LATENT_SHAPE, generator=torch.Generator().manual_seed(123)) * 0.5
    prompts = [f"prompt {i}" for i in range(8)]
    with torch.no_grad():
        losses = [
            float(distiller.step(latents, text_encoder(prompts), prompts, torch.Generator().manual_seed(s)).loss_cd)
            for s in range(4)
        ]
    return sum(losses) / len(losses)


def test_short_distillation_lowers_the_cd_loss(tiny_unet3d, tiny_vae):
    distiller, _, _, text_encoder = _setup(tiny_unet3d, tiny_vae, beta_img=0.0, beta_vid=0.0, target="online")
    before = _eval_cd_loss(distiller, text_encoder)
    _train(distiller, text_encoder, [f"prompt {i}" for i in range(8)], steps=25, lr=1e-2, seed=0)
    after = _eval_cd_loss(distiller, text_encoder)
    assert after < 0.85 * before, (before, after)


def _heldout_brightness(distiller, text_encoder, reward):
    prompts = [f"held-out {i}" for i in range(6)]
    text = text_encoder(prompts).detach()
    out = consistency_sample(
        distiller.student, text, (6, *LATENT_SHAPE), distiller.schedule, num_steps=4,
        generator=torch.Generator().manual_seed(99),
    )
    with torch.no_grad():
        frames = distiller.vae.decode_frames(out.latents, torch.arange(LATENT_SHAPE[1]).expand(6, -1))
        return float(reward(frames.flatten(0, 1), [p for p in prompts for _ in range(LATENT_SHAPE[1])]).mean())


def test_reward_feedback_raises_the_reward_on_held_out_prompts(tiny_unet3d, tiny_vae):
    train_prompts = [f"train {i}" for i in range(8)]
    cd_only, _, _, text_encoder = _setup(tiny_unet3d, tiny_vae, toy_decoder=True, beta_img=0.0, beta_vid=0.0)
    # The toy reward lives on a scale of its own (mean brightness); beta = 10 gives it a gradient
    # comparable to the Huber CD term's, as the paper's betas do for HPSv2.1 / ViCLIP scores.
    with_reward, _, _, _ = _setup(tiny_unet3d, tiny_vae, toy_decoder=True, beta_img=10.0, beta_vid=0.0)
    reward = ToyBrightnessReward()
    start = _heldout_brightness(cd_only, text_encoder, reward)
    _train(cd_only, text_encoder, train_prompts, steps=20, lr=1e-2, seed=0)
    _train(with_reward, text_encoder, train_prompts, steps=20, lr=1e-2, seed=0)
    cd_score = _heldout_brightness(cd_only, text_encoder, reward)
    rw_score = _heldout_brightness(with_reward, text_encoder, reward)
    assert rw_score > start + 0.1, (start, rw_score)
    assert rw_score > cd_score + 0.1, (cd_score, rw_score)
    assert abs(cd_score - start) < abs(rw_score - start)


def test_reward_step_memory_does_not_grow_with_sampling_steps(tiny_unet3d, tiny_vae):
    """T2V-Turbo's reward sees the single-step prediction; backprop through an n-step sampling
    chain (the alternative it avoids) keeps a graph that grows with n."""
    distiller, _, _, text_encoder = _setup(tiny_unet3d, tiny_vae, beta_img=1.0, beta_vid=1.0)
    prompts = ["a", "b"]
    text = text_encoder(prompts).detach()
    latents = torch.randn(2, *LATENT_SHAPE)
    ours, _ = saved_tensor_bytes(lambda: distiller.step(latents, text, prompts, torch.Generator().manual_seed(0)).loss)

    def chain(n):
        # Re-implements an n-step consistency sampling loop *with* gradients (what is avoided).
        sched = distiller.schedule
        z = torch.randn(2, *LATENT_SHAPE, generator=torch.Generator().manual_seed(1))
        from t2v_turbo_core.schedule import boundary_scalings, guidance_scale_embedding, lcm_timesteps
        w = guidance_scale_embedding(torch.full((2,), 7.5))
        ts = lcm_timesteps(n)
        for i, t in enumerate(ts):
            tb = torch.full((2,), t)
            eps = distiller.student(z, tb, encoder_hidden_states=text, timestep_cond=w).sample
            c_skip, c_out = boundary_scalings(torch.tensor(float(t)))
            den = c_skip * z + c_out * sched.pred_original_sample(eps, tb, z)
            z = sched.add_noise(den, torch.randn_like(den), torch.full((2,), ts[i + 1])) if i + 1 < n else den
        frames = distiller.vae.decode_frames(z, torch.arange(3).expand(2, 3))
        return -distiller.image_reward(frames.flatten(0, 1), ["a"] * 6).mean()

    chain_bytes = [saved_tensor_bytes(lambda n=n: chain(n))[0] for n in (1, 2, 4)]
    assert chain_bytes[0] < chain_bytes[1] < chain_bytes[2]
    assert chain_bytes[2] > 2.5 * chain_bytes[0]  # roughly linear in n
    # Our step also runs teacher and target passes, but under no_grad: they keep nothing.
    assert ours < chain_bytes[1]
