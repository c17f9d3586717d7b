"""Samplers against loops driven by diffusers' LCMScheduler and DDIMScheduler."""

import torch
from diffusers import DDIMScheduler, LCMScheduler

from t2v_turbo_core.lora import LoraSettings
from t2v_turbo_core.schedule import NoiseSchedule, guidance_scale_embedding
from t2v_turbo_core.sampling import consistency_sample, teacher_ddim_sample
from t2v_turbo_core.student import student_from_diffusers_unet

from .conftest import TEXT_DIM

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
SHAPE = (2, 4, 3, 4, 4)


def _student(tiny_unet3d):
    student = student_from_diffusers_unet(tiny_unet3d(), LoraSettings(rank=4, dropout=0.0)).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in student.named_parameters():
            if "lora_" in n or "cond_proj" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return student


def test_consistency_sampler_matches_diffusers_lcm_scheduler_loop(tiny_unet3d):
    student = _student(tiny_unet3d)
    text = torch.randn(2, 5, TEXT_DIM, generator=torch.Generator().manual_seed(0))
    out = consistency_sample(
        student, text, SHAPE, NoiseSchedule.scaled_linear(), num_steps=4, spacing="linspace",
        generator=torch.Generator().manual_seed(42),
    )
    assert out.nfe == 4 and out.timesteps == [999, 759, 499, 259]

    # Reference: the same student driven by diffusers' LCMScheduler with the same noise stream.
    ref = LCMScheduler(**SD_BETAS, timestep_scaling=10.0)
    ref.set_timesteps(4, original_inference_steps=50)
    gen = torch.Generator().manual_seed(42)
    z = torch.randn(SHAPE, generator=gen)
    w = guidance_scale_embedding(torch.full((2,), 7.5))
    with torch.no_grad():
        for t in ref.timesteps:
            eps = student(z, t.expand(2), encoder_hidden_states=text, timestep_cond=w).sample
            # LCMScheduler draws its re-noising noise from the generator in the same order.
            z, denoised = ref.step(eps, t, z, generator=gen, return_dict=False)
    torch.testing.assert_close(out.latents, denoised, rtol=1e-4, atol=1e-4)


def test_consistency_sampler_default_timesteps_are_t2v_turbos(tiny_unet3d):
    student = _student(tiny_unet3d)
    text = torch.randn(2, 5, TEXT_DIM)
    out = consistency_sample(student, text, SHAPE, NoiseSchedule.scaled_linear(), num_steps=4)
    assert out.timesteps == [999, 759, 519, 279] and out.nfe == 4


def test_teacher_sampler_matches_diffusers_ddim_loop_with_cfg(tiny_unet3d):
    teacher = tiny_unet3d()
    g = torch.Generator().manual_seed(0)
    text = torch.randn(2, 5, TEXT_DIM, generator=g)
    uncond = torch.randn(1, 5, TEXT_DIM, generator=g)
    out = teacher_ddim_sample(
        teacher, text, uncond, SHAPE, NoiseSchedule.scaled_linear(), num_steps=10, guidance_scale=7.5,
        generator=torch.Generator().manual_seed(7),
    )
    assert out.nfe == 20 and len(out.timesteps) == 10

    ref = DDIMScheduler(**SD_BETAS, timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False)
    ref.set_timesteps(10)
    assert ref.timesteps.tolist() == out.timesteps
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        for t in ref.timesteps:
            eps_c = teacher(z, t.expand(2), encoder_hidden_states=text).sample
            eps_u = teacher(z, t.expand(2), encoder_hidden_states=uncond.expand(2, -1, -1)).sample
            z = ref.step(eps_u + 7.5 * (eps_c - eps_u), t, z, eta=0.0).prev_sample
    torch.testing.assert_close(out.latents, z, rtol=1e-4, atol=1e-4)


def test_per_video_generators_make_each_video_independent_of_the_batch(tiny_unet3d):
    student = _student(tiny_unet3d)
    g = torch.Generator().manual_seed(0)
    text = torch.randn(2, 5, TEXT_DIM, generator=g)
    sched = NoiseSchedule.scaled_linear()
    both = consistency_sample(student, text, SHAPE, sched, generator=[torch.Generator().manual_seed(s) for s in (11, 12)])
    alone = consistency_sample(student, text[1:], (1, *SHAPE[1:]), sched, generator=[torch.Generator().manual_seed(12)])
    torch.testing.assert_close(both.latents[1:], alone.latents, rtol=1e-5, atol=1e-5)
