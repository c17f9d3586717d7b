"""The schedule pieces against diffusers' reference implementations."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_text2img import (
    LatentConsistencyModelPipeline,
)

from t2v_turbo_core.schedule import (
    NoiseSchedule,
    boundary_scalings,
    ddim_grid,
    ddim_step,
    guidance_scale_embedding,
    lcm_timesteps,
    sampling_timesteps,
)

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def test_alphas_cumprod_match_diffusers():
    ref = DDIMScheduler(**SD_BETAS)
    ours = NoiseSchedule.scaled_linear()
    assert torch.equal(ours.alphas_cumprod, ref.alphas_cumprod)


@pytest.mark.parametrize("spacing,offset", [("trailing", 0), ("leading", 1)])
def test_ddim_step_matches_diffusers_ddim_scheduler(spacing, offset):
    ref = DDIMScheduler(**SD_BETAS, timestep_spacing=spacing, steps_offset=offset, set_alpha_to_one=True, clip_sample=False)
    ref.set_timesteps(50)
    ours = NoiseSchedule.scaled_linear()
    assert sampling_timesteps(50, spacing=spacing) == ref.timesteps.tolist()
    gen = torch.Generator().manual_seed(0)
    for t in [int(ref.timesteps[0]), int(ref.timesteps[17]), int(ref.timesteps[-1])]:
        z = torch.randn(2, 4, 3, 4, 4, generator=gen)
        eps = torch.randn(2, 4, 3, 4, 4, generator=gen)
        expected = ref.step(eps, t, z, eta=0.0).prev_sample
        tb = torch.full((2,), t)
        x0 = ours.pred_original_sample(eps, tb, z)
        got = ddim_step(ours, x0, eps, tb - 1000 // 50)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_distillation_grid():
    grid = ddim_grid(20)
    assert grid[:3].tolist() == [19, 39, 59] and grid[-1] == 999 and len(grid) == 50
    assert len(ddim_grid(5)) == 200  # T2V-Turbo-v2
    with pytest.raises(ValueError):
        ddim_grid(7)


def test_lcm_timesteps_strided_is_t2v_turbo_schedule():
    # T2V-Turbo's T2VTurboScheduler.set_timesteps (Ji4chenLi/t2v-turbo, scheduler/t2v_turbo_scheduler.py)
    # and diffusers' LCMScheduler before v0.26 use origin[::-(L // n)][:n].
    assert lcm_timesteps(4) == [999, 759, 519, 279]
    assert lcm_timesteps(1) == [999]
    assert lcm_timesteps(2) == [999, 499]
    assert lcm_timesteps(8) == [999, 879, 759, 639, 519, 399, 279, 159]
    origin = np.arange(1, 201) * 5 - 1
    assert lcm_timesteps(16, origin_steps=200) == origin[::-12][:16].tolist()


@pytest.mark.parametrize("n,origin", [(1, 50), (2, 50), (4, 50), (8, 50), (16, 200)])
def test_lcm_timesteps_linspace_matches_installed_diffusers(n, origin):
    ref = LCMScheduler(**SD_BETAS)
    ref.set_timesteps(n, original_inference_steps=origin)
    assert lcm_timesteps(n, origin_steps=origin, spacing="linspace") == ref.timesteps.tolist()


@pytest.mark.parametrize("n", [1, 2])
def test_strided_and_linspace_agree_where_diffusers_changes_nothing(n):
    assert lcm_timesteps(n) == lcm_timesteps(n, spacing="linspace")


def test_lcm_timesteps_rejects_bad_counts():
    with pytest.raises(ValueError):
        lcm_timesteps(0)
    with pytest.raises(ValueError):
        lcm_timesteps(51)


def test_boundary_scalings_match_diffusers():
    ref = LCMScheduler(**SD_BETAS, timestep_scaling=10.0)
    for t in [0, 19, 279, 999]:
        c_skip_ref, c_out_ref = ref.get_scalings_for_boundary_condition_discrete(torch.tensor(t))
        c_skip, c_out = boundary_scalings(torch.tensor(t))
        torch.testing.assert_close(c_skip, c_skip_ref.float())
        torch.testing.assert_close(c_out, c_out_ref.float())
    c_skip, c_out = boundary_scalings(torch.tensor(0))
    assert c_skip == 1.0 and c_out == 0.0  # f is the identity at t = 0


def test_guidance_scale_embedding_matches_diffusers():
    w = torch.tensor([5.0, 7.5, 15.0])
    ref = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=256)
    ours = guidance_scale_embedding(w, 256)
    assert ours.shape == (3, 256)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
