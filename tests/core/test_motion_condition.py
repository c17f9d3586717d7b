"""The v2 student's motion-condition input: identity init is v1's function, the released init
is the released forward's formula, and the training/inference schedules of m."""

import pytest
import torch

from t2v_turbo_core.lora import LoraSettings, load_student, save_student, student_state_dict, trainable_parameters
from t2v_turbo_core.models import predict_noise
from t2v_turbo_core.motion_condition import (
    MotionConditionedWProjection,
    ScheduledMotionCondition,
    add_motion_condition,
    motion_cond_schedule,
    motion_cond_values,
    with_motion_cond,
)
from t2v_turbo_core.sampling import consistency_sample
from t2v_turbo_core.schedule import NoiseSchedule, guidance_scale_embedding, lcm_timesteps
from t2v_turbo_core.student import student_from_diffusers_unet
from t2v_turbo_core.teachers import videocrafter2_student

from .conftest import TEXT_DIM, make_tiny_unet3d
from .test_motion_guidance import make_tiny_vc2




def _trained(student, seed=7):
    # A student that has trained a little (non-zero LoRA B and w projection).
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in trainable_parameters(student).values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return student.eval()  # no dropout: outputs are compared exactly


def _students():
    yield "unet3d", _trained(student_from_diffusers_unet(make_tiny_unet3d(0), LoraSettings(rank=4, dropout=0.0))), (4, 4, 3, 4, 4), {}
    yield "vc2", _trained(videocrafter2_student(make_tiny_vc2(0), LoraSettings(rank=4, dropout=0.0))), (2, 4, 3, 8, 8), {"fps": 16}


@pytest.mark.parametrize("which", ["unet3d", "vc2"])
def test_identity_init_leaves_the_v1_student_unchanged(which):
    name, student, shape, kwargs = next(s for s in _students() if s[0] == which)
    g = torch.Generator().manual_seed(1)
    z, text = torch.randn(shape, generator=g), torch.randn(shape[0], 5, TEXT_DIM, generator=g)
    t = torch.tensor([999, 504] * (shape[0] // 2))
    w_emb = guidance_scale_embedding(torch.tensor([7.5, 12.0] * (shape[0] // 2)))
    with torch.no_grad():
        v1 = predict_noise(student, z, t, text, w_emb, **kwargs)
    keys_before = set(student_state_dict(student))
    add_motion_condition(student, init="identity")
    proj = next(m for m in student.modules() if isinstance(m, MotionConditionedWProjection))
    with torch.no_grad():
        for m in (0.0, 0.05, 0.3):
            cond = with_motion_cond(w_emb, torch.full((shape[0],), m))
            assert torch.equal(predict_noise(student, z, t, text, cond, **kwargs), v1)
        # The v1 call (no motion condition) is the released forward without motion_cond.
        assert torch.equal(predict_noise(student, z, t, text, w_emb, **kwargs), v1)
    # The new layers are saved, trained and not LoRA-wrapped; the w projection keeps its key.
    keys = set(student_state_dict(student))
    assert keys_before < keys and {k for k in keys - keys_before} == {
        k for k in keys if k.endswith(("motion_cond_proj.weight", "combine_proj.weight"))}
    assert proj.motion_cond_proj.weight.requires_grad and proj.combine_proj.weight.requires_grad
    # Identity init is no saddle: the zero block of combine_proj gets a gradient at once.
    cond = with_motion_cond(w_emb, torch.full((shape[0],), 0.05))
    predict_noise(student, z, t, text, cond, **kwargs).square().mean().backward()
    right = proj.combine_proj.weight.grad[:, proj.out_features:]
    assert right.abs().sum() > 0


def test_released_init_follows_the_released_forward():
    _, student, shape, kwargs = next(_students())
    add_motion_condition(student, init="released")
    proj = next(m for m in student.modules() if isinstance(m, MotionConditionedWProjection))
    w_emb = guidance_scale_embedding(torch.tensor([7.5]))
    m_emb = guidance_scale_embedding(torch.tensor([0.05]))
    with torch.no_grad():
        out = proj(with_motion_cond(w_emb, torch.tensor([0.05])))
        # e = combine_proj(cat[time_cond_proj(emb w), motion_cond_proj(emb m)]), all bias-free
        expected = torch.cat([w_emb @ proj.weight.T, m_emb @ proj.motion_cond_proj.weight.T], 1) @ proj.combine_proj.weight.T
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, w_emb @ proj.weight.T, atol=1e-3)  # not v1's function
    bound = 1 / proj.combine_proj.in_features**0.5  # nn.Linear's default U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert proj.combine_proj.weight.abs().max() <= bound and proj.combine_proj.weight.std() > bound / 3


def test_save_load_round_trip_and_bad_input(tmp_path):
    _, student, shape, kwargs = next(_students())
    add_motion_condition(student, init="released")
    save_student(student, tmp_path / "a.safetensors")
    _, other, _, _ = next(_students())
    with pytest.raises(ValueError, match="does not match"):  # a v1 student cannot take a v2 adapter
        load_student(other, tmp_path / "a.safetensors")
    add_motion_condition(other, init="identity")
    load_student(other, tmp_path / "a.safetensors")
    for k, v in student_state_dict(student).items():
        assert torch.equal(student_state_dict(other)[k], v)
    with pytest.raises(ValueError, match="already has"):
        add_motion_condition(other)
    with pytest.raises(ValueError, match="motion_cond_init"):
        add_motion_condition(make_tiny_unet3d(0, time_cond_proj_dim=256), init="zero")
    lora_w = student_from_diffusers_unet(make_tiny_unet3d(0), LoraSettings(rank=4, w_proj_init="released"))
    with pytest.raises(ValueError, match="trained in full"):
        add_motion_condition(lora_w)
    with pytest.raises(ValueError, match="features"):
        with torch.no_grad():
            next(m for m in other.modules() if isinstance(m, MotionConditionedWProjection))(torch.zeros(1, 100))


def test_training_values_mask_like_the_guidance_term():
    index = torch.tensor([0, 99, 100, 199, 150])
    use = torch.tensor([True, True, True, True, False])
    assert motion_cond_values(index, use, 0.05, 200, 0.5).tolist() == pytest.approx([0, 0, 0.05, 0.05, 0])


def test_inference_schedule_is_the_released_one():
    # predict.py: 16 steps, lcm_origin_steps 200 -> 999, 939, ..., 99; m = 0.05 where t >= 500.
    ts = lcm_timesteps(16, 200)
    assert ts == [999 - 60 * i for i in range(16)]
    assert motion_cond_schedule(ts) == [0.05] * 9 + [0.0] * 7
    # The gradio app's percentage 0.3: t >= 700 -> the first 5 steps.
    assert motion_cond_schedule(ts, 0.05, 0.3) == [0.05] * 5 + [0.0] * 11


def test_scheduled_wrapper_feeds_the_schedule_to_the_sampler():
    _, student, shape, kwargs = next(_students())
    add_motion_condition(student, init="released")
    wrapped = ScheduledMotionCondition(student)
    text = torch.randn(1, 5, TEXT_DIM, generator=torch.Generator().manual_seed(3))
    out = consistency_sample(wrapped, text, (1, *shape[1:]), NoiseSchedule.scaled_linear(), num_steps=16, origin_steps=200,
                             generator=torch.Generator().manual_seed(4))
    assert out.nfe == 16 and wrapped.used == [0.05] * 9 + [0.0] * 7
    # Same draws with m = 0 throughout: another video (the released-init motion input matters).
    flat = ScheduledMotionCondition(student, motion_gs=0.0)
    out0 = consistency_sample(flat, text, (1, *shape[1:]), NoiseSchedule.scaled_linear(), num_steps=16, origin_steps=200,
                              generator=torch.Generator().manual_seed(4))
    assert not torch.allclose(out.latents, out0.latents, atol=1e-4)
