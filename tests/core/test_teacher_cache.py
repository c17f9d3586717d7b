"""Precomputed teacher targets (v2): a record turned into the distillation target equals the
live teacher's target on the same draws; motion guidance enters the ODE step as its formula."""

import dataclasses

import pytest
import torch

from t2v_turbo_core.distillation import ConsistencyDistiller, DistillationConfig
from t2v_turbo_core.lora import LoraSettings, trainable_parameters
from t2v_turbo_core.schedule import NoiseSchedule, boundary_scalings, ddim_grid, guidance_scale_embedding
from t2v_turbo_core.student import student_from_diffusers_unet
from t2v_turbo_core.teacher_cache import (
    collate,
    consistency_target_from_records,
    precompute_teacher_target,
    teacher_ode_step,
)

from .conftest import TEXT_DIM, make_tiny_unet3d

SCHEDULE = NoiseSchedule.scaled_linear()
SHAPE = (4, 3, 4, 4)




def _distiller(target="online"):
    teacher = make_tiny_unet3d(seed=0)
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, dropout=0.0))
    # A student that has trained a little: non-zero LoRA B, so student != teacher.
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in trainable_parameters(student).values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    uncond = torch.randn(1, 5, TEXT_DIM, generator=torch.Generator().manual_seed(8))
    config = DistillationConfig(skip=5, beta_img=0.0, beta_vid=0.0, target=target)
    return ConsistencyDistiller(student, SCHEDULE, uncond, config), teacher, uncond


@pytest.mark.parametrize("target", ["online", "ema"])
def test_target_from_records_equals_the_live_teacher_target(target):
    distiller, teacher, uncond = _distiller(target)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, *SHAPE, generator=g)
    text = torch.randn(2, 5, TEXT_DIM, generator=g)
    records = []
    for i in range(2):
        seed = 100 + i
        rec = precompute_teacher_target(teacher, SCHEDULE, latents[i], text[i], uncond, torch.Generator().manual_seed(seed), skip=5)
        # The record's draws are (index, noise) from its generator, in that order.
        replay = torch.Generator().manual_seed(seed)
        index = int(torch.randint(0, 200, (1,), generator=replay))
        noise = torch.randn((1, *SHAPE), generator=replay)
        assert rec.index == index and not rec.use_motion_guide
        torch.testing.assert_close(rec.noisy_latent, SCHEDULE.add_noise(latents[i : i + 1], noise, ddim_grid(5)[index : index + 1])[0])
        records.append(rec)
    batch = collate(records)
    w = torch.rand((2,), generator=g) * 10 + 5  # w ~ U[5, 15], as the distiller draws it

    # Live: the distiller's own teacher step (student with adapters disabled) on the same z_t, w.
    t_start = ddim_grid(5)[batch.index]
    t_end = (t_start - 5).clamp(min=0)
    w_emb = guidance_scale_embedding(w, 256)
    c_skip, c_out = boundary_scalings(t_end)
    live = distiller._target(
        batch.noisy_latent, t_start, t_end, text, uncond.expand(2, -1, -1), w.reshape(2, 1, 1, 1, 1), w_emb,
        c_skip.reshape(2, 1, 1, 1, 1), c_out.reshape(2, 1, 1, 1, 1), torch.float32, torch.device("cpu"),
    )
    cached = consistency_target_from_records(distiller, batch, w)
    # fp32; the live teacher batches cond and uncond in one call, the record ran them apart.
    # Measured max |diff| 6.7e-6 on targets of size ~3.8 (fp32 rounding, amplified at small t
    # by x0 = (z - sigma eps) / alpha and theta^-).
    torch.testing.assert_close(cached, live, rtol=0, atol=5e-5)
    # And it depends on w: another draw gives another target.
    assert not torch.allclose(consistency_target_from_records(distiller, batch, w + 1.0), live, atol=1e-3)


def test_motion_guidance_in_the_ode_step_is_sigma_end_times_the_eps_correction():
    g = torch.Generator().manual_seed(1)
    b = 3
    index = torch.tensor([50, 100, 199])
    t_start = ddim_grid(5)[index]
    t_end = (t_start - 5).clamp(min=0)
    z, eps_c, eps_u, score = (torch.randn(b, *SHAPE, generator=g, dtype=torch.float64) for _ in range(4))
    w = torch.tensor([5.0, 9.0, 15.0], dtype=torch.float64)
    plain = teacher_ode_step(SCHEDULE, z, t_start, t_end, eps_c, eps_u, w)
    guided = teacher_ode_step(SCHEDULE, z, t_start, t_end, eps_c, eps_u, w, score, index, None, motion_gs=0.05)
    abar_s = SCHEDULE.alphas_cumprod.double()[t_start]
    abar_e = SCHEDULE.alphas_cumprod.double()[t_end]
    # z_end = sqrt(abar_end) x0 + sqrt(1 - abar_end) eps with x0 untouched: the eps correction
    # -motion_gs c(t) score moves z_end by sqrt(1 - abar_end) times it.
    expected_shift = -((1 - abar_e).sqrt() * 0.05 * (1 - abar_s.sqrt()).sqrt()).reshape(b, 1, 1, 1, 1) * score
    assert torch.equal(guided[0], plain[0])  # index 50 < 100: no guidance
    torch.testing.assert_close(guided[1:] - plain[1:], expected_shift[1:].to(guided.dtype), rtol=1e-5, atol=1e-6)


def test_motion_record_has_a_score_and_a_record_index_range():
    teacher = make_tiny_unet3d(seed=0)
    g = torch.Generator().manual_seed(2)
    latent = torch.randn(*SHAPE, generator=g)
    text = torch.randn(5, TEXT_DIM, generator=g)
    uncond = torch.zeros(1, 5, TEXT_DIM)
    rec = precompute_teacher_target(teacher, SCHEDULE, latent, text, uncond, torch.Generator().manual_seed(3), skip=5, index_range=(100, 104), motion=True)
    assert 100 <= rec.index < 104 and rec.use_motion_guide
    assert rec.motion_score.shape == SHAPE and rec.motion_score.abs().sum() > 0
    with torch.no_grad():
        plain = teacher(rec.noisy_latent[None], ddim_grid(5)[rec.index : rec.index + 1], encoder_hidden_states=text[None]).sample[0]
    torch.testing.assert_close(rec.eps_cond, plain, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="index_range"):
        precompute_teacher_target(teacher, SCHEDULE, latent, text, uncond, index_range=(150, 250))


# --- training from the cache (CachedConsistencyDistiller) ------------------------------------


def _cd_pair(target, motion_cond=None):
    from t2v_turbo_core.motion_condition import add_motion_condition
    from t2v_turbo_core.teacher_cache import CachedConsistencyDistiller

    online, teacher, uncond = _distiller(target)
    student = online.student.eval()  # no dropout in the online prediction: the draws are the generator's
    if motion_cond:
        add_motion_condition(student, init=motion_cond)
        online = ConsistencyDistiller(student, SCHEDULE, uncond, online.config)
    cached = CachedConsistencyDistiller(student, SCHEDULE, online.config, motion_gs=0.05)
    return online, cached, teacher, uncond


@pytest.mark.parametrize("target,motion_cond", [("online", None), ("ema", None), ("online", "identity")])
def test_cache_step_loss_equals_the_online_step_loss(target, motion_cond):
    online, cached, teacher, uncond = _cd_pair(target, motion_cond)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, *SHAPE, generator=g)
    text = torch.randn(1, 5, TEXT_DIM, generator=g)
    for seed in (11, 12, 13):
        # The online step draws (index, noise, w) from its generator; the record draws
        # (index, noise) from the same seed and the cache step then draws w.
        live = online.step(latents, text, generator=torch.Generator().manual_seed(seed))
        gen = torch.Generator().manual_seed(seed)
        rec = precompute_teacher_target(teacher, SCHEDULE, latents[0], text[0], uncond, gen, skip=5)
        out = cached.step_from_records(collate([rec]), generator=gen)
        assert torch.equal(out.start_timesteps, live.start_timesteps) and torch.equal(out.guidance_scale, live.guidance_scale)
        torch.testing.assert_close(out.model_pred, live.model_pred, rtol=0, atol=1e-6)
        # fp32 rounding only (cond/uncond batched vs apart): measured <= 1.5e-5 relative over 40 draws.
        torch.testing.assert_close(out.loss, live.loss, rtol=5e-5, atol=1e-7)
        out.loss.backward()  # the cache step's loss trains the student


def test_zero_motion_score_is_v1_cd_and_an_active_score_changes_the_loss():
    online, cached, teacher, uncond = _cd_pair("online", "identity")
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, *SHAPE, generator=g)
    text = torch.randn(1, 5, TEXT_DIM, generator=g)
    seed = 21
    live = online.step(latents, text, generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed)
    rec = precompute_teacher_target(teacher, SCHEDULE, latents[0], text[0], uncond, gen, skip=5)
    state = gen.get_state()
    zero = dataclasses.replace(rec, motion_score=torch.zeros_like(rec.noisy_latent))  # a motion video, zero gradient
    out = cached.step_from_records(collate([zero]), generator=gen)
    torch.testing.assert_close(out.loss, live.loss, rtol=5e-5, atol=1e-7)
    score = torch.randn(rec.noisy_latent.shape, generator=torch.Generator().manual_seed(5))
    for index, active in ((150, True), (40, False)):
        moved = dataclasses.replace(rec, index=index, motion_score=score)
        plain = dataclasses.replace(rec, index=index)
        gen.set_state(state)
        a = cached.step_from_records(collate([moved]), generator=gen).loss
        gen.set_state(state)
        b = cached.step_from_records(collate([plain]), generator=gen).loss
        assert (not torch.allclose(a, b, rtol=1e-4)) if active else torch.equal(a, b)


def test_data_decoupling_scores_only_the_short_captions():
    from t2v_turbo_core.models import VideoVAE
    from t2v_turbo_core.teacher_cache import CachedConsistencyDistiller

    from .conftest import make_tiny_vae

    seen: list[list[str]] = []

    def image_reward(images, prompts):  # differentiable, and records what it was asked to score
        seen.append(list(prompts))
        return images.mean(dim=(1, 2, 3))

    online, teacher, uncond = _distiller("online")
    config = DistillationConfig(skip=5, beta_img=1.0, beta_vid=0.0, target="online", image_reward_frames=2)
    cached = CachedConsistencyDistiller(online.student.eval(), SCHEDULE, config, vae=VideoVAE(make_tiny_vae(0), 0.18215),
                                        image_reward=image_reward)
    g = torch.Generator().manual_seed(0)
    latents, text = torch.randn(3, *SHAPE, generator=g), torch.randn(3, 5, TEXT_DIM, generator=g)
    batch = collate([precompute_teacher_target(teacher, SCHEDULE, latents[i], text[i], uncond, torch.Generator().manual_seed(i),
                                               skip=5) for i in range(3)])
    long = ["long a", "long b", "long c"]
    out = cached.step_from_records(batch, long, torch.Generator().manual_seed(1), reward_prompts=["", "short b", "short c"])
    assert set(seen[-1]) == {"short b", "short c"} and out.image_reward is not None
    out.loss.backward()
    cached.step_from_records(batch, long, torch.Generator().manual_seed(1), reward_prompts=["", "", ""])
    assert set(seen[-1]) == set(long)  # no short caption in the batch: the long ones
    cached.step_from_records(batch, long, torch.Generator().manual_seed(1))
    assert set(seen[-1]) == set(long)  # decoupling off
