"""`--teacher-protocol native`: the teachers' own samplers.

* VideoCrafter2 (LVDM's DDIMSampler as VideoCrafter's script runs it): the uniform grid
  1, 21, ..., 981, the previous abar of the last step abar_0, eta 1 noise and the `use_scale`
  x0 rescaling, checked against a hand computation in float64;
* ModelScope: diffusers' DDIMScheduler built from the folder's scheduler_config.json, run
  step by step beside our sampler (eta 0 and eta > 0 with the same noise);
* `bench generate` records the protocol and conditions VC2 on fps 28; the tiny teacher has no
  native sampler (a clear error).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from bench import generate as G
from t2v_turbo_core.sampling import (
    diffusers_ddim_plan,
    lvdm_ddim_plan,
    lvdm_scale_array,
    planned_ddim_sample,
    randn_per_video,
)
from t2v_turbo_core.schedule import NoiseSchedule
from t2v_turbo_core.teachers import load_modelscope, load_videocrafter2

from .test_teachers import TINY_VC2, tiny_ms_dir, tiny_vc2_ckpt  # noqa: F401 (fixtures)

SCHEDULE = NoiseSchedule.scaled_linear(1000, 0.00085, 0.012)


class ToyEps(nn.Module):
    """A deterministic eps-predictor that depends on z, t and the text (so CFG matters)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.3))
        self.calls: list[dict] = []

    def forward(self, z, t, encoder_hidden_states=None, timestep_cond=None, **kwargs):
        self.calls.append(kwargs)
        shape = (-1,) + (1,) * (z.ndim - 1)
        return self.w * z + torch.sin(t.float() / 97).reshape(shape) * 0.2 + encoder_hidden_states.mean(dim=(1, 2)).reshape(shape)


def _hand_lvdm(z, text, uncond, g, steps, noises):
    """LVDM's p_sample_ddim written out in float64 for `steps` uniform steps (eta 1, use_scale)."""
    ac = SCHEDULE.alphas_cumprod.double().numpy()
    scale = np.concatenate([np.linspace(1.0, 0.7, 400), np.full(1000, 0.7)])
    ts = list(range(0, 1000, 1000 // steps))
    ts = [t + 1 for t in ts]
    x = z.double()
    for i, t in enumerate(reversed(ts)):
        index = len(ts) - 1 - i
        a_t, a_prev = ac[ts[index]], (ac[ts[index - 1]] if index > 0 else ac[0])
        s_t, s_prev = scale[ts[index]], (scale[ts[index - 1]] if index > 0 else scale[0])
        tt = torch.full((x.shape[0],), t)
        e_c = 0.3 * x + math.sin(t / 97) * 0.2 + text.double().mean(dim=(1, 2)).reshape(-1, 1, 1, 1, 1)
        e_u = 0.3 * x + math.sin(t / 97) * 0.2 + uncond.double().mean()
        e = e_u + g * (e_c - e_u)
        sigma = 1.0 * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        pred_x0 = (x - math.sqrt(1 - a_t) * e) / math.sqrt(a_t) / s_t
        x = math.sqrt(a_prev) * s_prev * pred_x0 + math.sqrt(1 - a_prev - sigma**2) * e + sigma * noises[i].double()
        del tt
    return x


def test_vc2_native_plan_is_lvdms_uniform_grid_with_eta_1_and_x0_rescaling():
    plan = lvdm_ddim_plan(SCHEDULE, 50, eta=1.0, use_scale=True, scale_b=0.7)
    ac = SCHEDULE.alphas_cumprod.double()
    assert list(plan.timesteps) == list(range(981, 0, -20))  # 981, 961, ..., 21, 1
    assert plan.alphas_prev[-1] == pytest.approx(float(ac[0]))  # the last step lands on abar_0, not 1
    assert plan.alphas_prev[0] == pytest.approx(float(ac[961]))
    arr = lvdm_scale_array(1000, 1.0, 0.7, 400, False)
    assert arr.shape == (1400,) and arr[0] == 1.0 and arr[399] == pytest.approx(0.7) and arr[400] == 0.7
    assert plan.x0_scale[0] == pytest.approx(0.7) and plan.x0_scale[-1] == pytest.approx(1 - 0.3 / 399)  # t = 981, t = 1
    assert plan.x0_scale_prev[-1] == 1.0 and plan.x0_scale_prev[-2] == pytest.approx(1 - 0.3 / 399)  # t = 1, t = 21
    assert plan.x0_scale[-2] == pytest.approx(1 - 0.3 * 21 / 399)
    sig = plan.sigmas()
    a, ap = float(ac[981]), float(ac[961])
    assert sig[0] == pytest.approx(math.sqrt((1 - ap) / (1 - a) * (1 - a / ap)))
    assert all(s > 0 for s in sig)  # eta 1: fresh noise at every step, the last one included

    # The whole chain against the hand computation (3 videos' worth of noise, 5 steps).
    steps, g = 5, 12.0
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 2, 3, 3, generator=gen)
    text, uncond = torch.randn(2, 3, 4, generator=gen), torch.randn(1, 3, 4, generator=gen)
    seeds = [11, 12]
    ours = planned_ddim_sample(ToyEps(), text, uncond, z.shape, lvdm_ddim_plan(SCHEDULE, steps), g,
                               generator=[torch.Generator().manual_seed(s) for s in seeds], latents=z)
    replay = [torch.Generator().manual_seed(s) for s in seeds]
    noises = [randn_per_video(z.shape, replay, torch.device("cpu"), torch.float32) for _ in range(steps)]
    expected = _hand_lvdm(z, text, uncond, g, steps, noises)
    assert ours.timesteps == [801, 601, 401, 201, 1] and ours.nfe == 2 * steps
    torch.testing.assert_close(ours.latents.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, eta",
    [
        ({}, 0.0),  # the tiny folder's own scheduler_config.json (leading, set_alpha_to_one false)
        ({"steps_offset": 1}, 0.0),  # text-to-video-ms-1.7b's scheduler_config.json sets steps_offset 1
        ({"steps_offset": 1}, 0.6),
        ({"timestep_spacing": "trailing", "set_alpha_to_one": True}, 0.0),
        ({"timestep_spacing": "linspace"}, 0.3),
    ],
)
def test_ms_native_sampler_is_diffusers_ddim_scheduler_from_the_folder_config(tiny_ms_dir, overrides, eta):  # noqa: F811
    from diffusers import DDIMScheduler

    config = {**json.loads((tiny_ms_dir / "scheduler" / "scheduler_config.json").read_text()), **overrides}
    schedule = load_modelscope(tiny_ms_dir).schedule
    steps, g = 10, 9.0
    plan = diffusers_ddim_plan(config, schedule, steps, eta=eta)
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(steps)
    assert list(plan.timesteps) == scheduler.timesteps.tolist()

    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 2, 3, 3, generator=gen)
    text, uncond = torch.randn(2, 3, 4, generator=gen), torch.randn(1, 3, 4, generator=gen)
    seeds = [5, 6]
    model = ToyEps()
    ours = planned_ddim_sample(model, text, uncond, z.shape, plan, g, generator=[torch.Generator().manual_seed(s) for s in seeds], latents=z)

    replay = [torch.Generator().manual_seed(s) for s in seeds]
    x = z.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            tt = torch.full((2,), int(t))
            e_c = model(x, tt, text)
            e_u = model(x, tt, uncond.expand_as(text))
            e = e_u + g * (e_c - e_u)
            noise = randn_per_video(x.shape, replay, torch.device("cpu"), torch.float32) if eta > 0 else None
            x = scheduler.step(e, t, x, eta=eta, variance_noise=noise).prev_sample
    torch.testing.assert_close(ours.latents, x, rtol=1e-5, atol=1e-5)


def test_unsupported_scheduler_options_are_refused():
    with pytest.raises(ValueError, match="clip_sample"):
        diffusers_ddim_plan({"clip_sample": True}, SCHEDULE, 50)
    with pytest.raises(ValueError, match="prediction_type"):
        diffusers_ddim_plan({"clip_sample": False, "prediction_type": "v_prediction"}, SCHEDULE, 50)


def test_bundles_describe_their_native_samplers(tiny_vc2_ckpt, tiny_ms_dir):  # noqa: F811
    vc2 = load_videocrafter2(tiny_vc2_ckpt, config=TINY_VC2).native_sampler
    assert {k: vc2[k] for k in ("sampler", "steps", "guidance_scale", "eta", "fps", "use_scale", "scale_b")} == {
        "sampler": "lvdm-ddim", "steps": 50, "guidance_scale": 12.0, "eta": 1.0, "fps": 28, "use_scale": True, "scale_b": 0.7,
    }  # fmt: skip
    ms = load_modelscope(tiny_ms_dir).native_sampler
    assert ms["sampler"] == "diffusers-ddim" and ms["guidance_scale"] == 9.0 and ms["eta"] == 0.0
    assert ms["scheduler_config"]["_class_name"] == "DDIMScheduler"


def test_generate_records_the_native_protocol_and_conditions_vc2_on_fps_28(tiny_vc2_ckpt, tmp_path):  # noqa: F811
    bundle = load_videocrafter2(tiny_vc2_ckpt, config=TINY_VC2)
    bundle.num_frames = 4  # a short clip keeps the test fast; the protocol does not depend on it
    seen = []

    class Spy(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args, **kwargs):
            seen.append(kwargs.get("fps"))
            return self.inner(*args, **kwargs)

    summary = G.generate_videos(bundle, Spy(bundle.unet), ["a corgi on the beach"], tmp_path / "native", sampler="teacher",
                                steps=5, videos_per_prompt=1, seed=3, teacher_protocol="native")
    assert summary.generated == 1 and set(seen) == {28}
    rec = next(iter(G.read_manifest(tmp_path / "native").values()))
    assert rec["teacher_protocol"] == "native" and rec["timesteps"] == [801, 601, 401, 201, 1] and rec["guidance_scale"] == 12.0
    gen = json.loads((tmp_path / "native" / G.GENERATION_NAME).read_text())["config"]
    assert gen["teacher_protocol"] == "native" and gen["native_sampler"]["eta"] == 1.0 and gen["native_sampler"]["x0_rescaled"]
    assert gen["unet_kwargs"] == {"fps": 28} and gen["timestep_spacing"] == "native"

    seen.clear()
    G.generate_videos(bundle, Spy(bundle.unet), ["a corgi on the beach"], tmp_path / "matched", sampler="teacher",
                      steps=2, videos_per_prompt=1, seed=3)
    assert set(seen) == {16}
    rec = next(iter(G.read_manifest(tmp_path / "matched").values()))
    assert rec["teacher_protocol"] == "matched" and rec["timesteps"] == [999, 499] and rec["guidance_scale"] == 7.5
