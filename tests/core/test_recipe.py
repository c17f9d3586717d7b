"""The released recipe beside the paper's, in the library: reward weighting, the w projection,
one default M, and the one-UNet student (its base layers are the teacher's own tensors)."""

import inspect
import math

import pytest
import torch

from t2v_turbo_core.distillation import (
    RELEASED_CD_FRACTION,
    ConsistencyDistiller,
    DistillationConfig,
    effective_loss_weights,
)
from t2v_turbo_core.lora import LoraSettings, load_student, lora_target_modules, merge_lora, save_student, trainable_parameters
from t2v_turbo_core.models import VideoVAE
from t2v_turbo_core.rewards import DEFAULT_IMAGE_REWARD_FRAMES, mixed_reward_loss
from t2v_turbo_core.schedule import NoiseSchedule
from t2v_turbo_core.student import student_from_diffusers_unet

from .test_distillation import LATENT_SHAPE, ToyBrightnessReward, ToyFrameDecoder, ToyTextEncoder, ToyVideoReward

PROMPTS = ["a red circle", "a blue square"]


def _distiller(tiny_unet3d, **cfg):
    teacher = tiny_unet3d(seed=0)
    torch.manual_seed(3)
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, dropout=0.0))
    with torch.no_grad():  # a student some way into training: B != 0, so every term has a gradient
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(7)) * 0.1)
    student.eval()  # no dropout (diffusers' temporal convs have p = 0.1): gradients are comparable
    text_encoder = ToyTextEncoder()
    config = DistillationConfig(image_reward_frames=2, **cfg)
    distiller = ConsistencyDistiller(
        student, NoiseSchedule.scaled_linear(), text_encoder([""]).detach(), config,
        vae=VideoVAE(ToyFrameDecoder(), scaling_factor=1.0), image_reward=ToyBrightnessReward(), video_reward=ToyVideoReward(),
    )
    return distiller, text_encoder


def _grads(distiller, text_encoder, generator, force=None):
    if force is not None:
        distiller.draw_terms = lambda g: (torch.rand((), generator=g), force)[1]  # same RNG use as a real draw
    out = distiller.step(torch.randn(2, *LATENT_SHAPE, generator=torch.Generator().manual_seed(11)), text_encoder(PROMPTS), PROMPTS, generator)
    params = trainable_parameters(distiller.student)
    grads = torch.autograd.grad(out.loss, list(params.values()), allow_unused=True)
    return out, torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params.values())])


def test_effective_weights_paper_and_released():
    assert effective_loss_weights(DistillationConfig(beta_img=1.0, beta_vid=2.0)) == (1.0, 1.0, 2.0)
    cd, img, vid = effective_loss_weights(DistillationConfig(beta_img=1.0, beta_vid=2.0, reward_weighting="released"))
    assert (cd, img) == (1.0, 1.0) and vid == pytest.approx(2 / 3)  # 1 : 1 : 0.67, the released VC2 recipe
    assert effective_loss_weights(DistillationConfig(beta_vid=0.0, reward_weighting="released"))[2] == 0.0
    with pytest.raises(ValueError, match="reward_weighting"):
        DistillationConfig(reward_weighting="mixed").validate()


def test_released_split_draws_six_of_eight_steps_for_cd(tiny_unet3d):
    distiller, _ = _distiller(tiny_unet3d, reward_weighting="released")
    draws = [distiller.draw_terms(torch.Generator().manual_seed(s)) for s in range(4000)]
    assert set(draws) == {"cd_img", "vid"}
    share = draws.count("cd_img") / len(draws)
    assert abs(share - RELEASED_CD_FRACTION) < 0.03  # 4 sigma of a binomial(4000, 0.75) is 0.027
    # Reproducible from the step seed; the paper weighting never draws.
    assert draws[:50] == [distiller.draw_terms(torch.Generator().manual_seed(s)) for s in range(50)]
    paper, _ = _distiller(tiny_unet3d)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert paper.draw_terms(g) == "all" and torch.equal(g.get_state(), state)


def test_released_steps_compute_only_their_terms(tiny_unet3d):
    distiller, text_encoder = _distiller(tiny_unet3d, beta_img=1.0, beta_vid=2.0, reward_weighting="released")
    seen = set()
    for seed in range(12):
        out = distiller.step(torch.randn(2, *LATENT_SHAPE), text_encoder(PROMPTS), PROMPTS, torch.Generator().manual_seed(seed))
        seen.add(out.terms)
        if out.terms == "cd_img":
            assert out.video_reward is None and out.image_reward is not None
            torch.testing.assert_close(out.loss.detach(), out.loss_cd - 1.0 * out.image_reward)
        else:
            assert out.terms == "vid" and out.image_reward is None and math.isnan(float(out.loss_cd))
            torch.testing.assert_close(out.loss.detach(), -2.0 * out.video_reward)
    assert seen == {"cd_img", "vid"}


def test_expected_released_gradient_is_the_paper_gradient_with_beta_vid_over_three(tiny_unet3d):
    """E[grad] = p (grad L_CD - b_img grad R_img) + (1 - p)(-b_vid grad R_vid)
    = p * grad(L_CD - b_img R_img - b_vid (1 - p) / p R_vid), exactly, for the same draws."""
    p = RELEASED_CD_FRACTION
    released, te = _distiller(tiny_unet3d, beta_img=1.0, beta_vid=2.0, reward_weighting="released")
    _, g_cd_img = _grads(released, te, torch.Generator().manual_seed(5), force="cd_img")
    _, g_vid = _grads(released, te, torch.Generator().manual_seed(5), force="vid")
    expected = p * g_cd_img + (1 - p) * g_vid

    paper, te = _distiller(tiny_unet3d, beta_img=1.0, beta_vid=2.0 * (1 - p) / p)
    g = torch.Generator().manual_seed(5)
    torch.rand((), generator=g)  # the released step's draw, so that t, noise, w and frames coincide
    _, g_paper = _grads(paper, te, g)
    assert g_vid.abs().sum() > 0 and g_cd_img.abs().sum() > 0
    torch.testing.assert_close(expected, p * g_paper, rtol=1e-4, atol=1e-7)
    # ...and it is not the paper's beta_vid = 2 (the weights differ by 3x on the video term).
    paper2, te = _distiller(tiny_unet3d, beta_img=1.0, beta_vid=2.0)
    g = torch.Generator().manual_seed(5)
    torch.rand((), generator=g)
    _, g_paper2 = _grads(paper2, te, g)
    assert not torch.allclose(expected, p * g_paper2, rtol=1e-3, atol=1e-6)


def test_one_default_image_reward_frames():
    assert DistillationConfig().image_reward_frames == DEFAULT_IMAGE_REWARD_FRAMES
    assert inspect.signature(mixed_reward_loss).parameters["image_frames"].default == DEFAULT_IMAGE_REWARD_FRAMES


def test_w_projection_zero_is_trained_released_is_random_frozen_with_lora(tiny_unet3d, tmp_path):
    teacher = tiny_unet3d(seed=0)
    zero = student_from_diffusers_unet(teacher, LoraSettings(rank=4))
    assert float(zero.time_embedding.cond_proj.weight.detach().abs().sum()) == 0
    assert "time_embedding.cond_proj.weight" in trainable_parameters(zero)
    assert "time_embedding.cond_proj" not in lora_target_modules(zero)

    released = student_from_diffusers_unet(teacher, LoraSettings(rank=4, w_proj_init="released"))
    proj = released.time_embedding.cond_proj
    base = proj.base_layer.weight  # peft wrapped it: the projection has a LoRA
    assert not base.requires_grad and proj.lora_A["default"].weight.requires_grad
    bound = 1 / math.sqrt(base.shape[1])  # nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert float(base.abs().max()) <= bound and float(base.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)
    trainable = trainable_parameters(released)
    assert all("lora_" in n for n in trainable) and any("cond_proj.lora_" in n for n in trainable)
    # The same frozen matrix every time (fixed seed), and it travels in the adapter file.
    again = student_from_diffusers_unet(teacher, LoraSettings(rank=4, w_proj_init="released"))
    torch.testing.assert_close(again.time_embedding.cond_proj.base_layer.weight, base)
    with torch.no_grad():
        base.mul_(2)
    save_student(released, tmp_path / "a.safetensors")
    load_student(again, tmp_path / "a.safetensors")
    torch.testing.assert_close(again.time_embedding.cond_proj.base_layer.weight, base)
    with pytest.raises(ValueError, match="w_proj_init"):
        LoraSettings(w_proj_init="random")


def test_lora_student_shares_the_teacher_tensors_and_never_changes_them(tiny_unet3d):
    teacher = tiny_unet3d(seed=0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, dropout=0.0))
    ptrs = {p.data_ptr() for p in teacher.parameters()}
    base = [p for n, p in student.named_parameters() if "lora_" not in n and "cond_proj" not in n]
    assert base and all(p.data_ptr() in ptrs for p in base)  # one UNet in memory
    with torch.no_grad():
        for n, p in student.named_parameters():
            if "lora_B" in n:
                p.normal_()
    merge_lora(student)  # merging must not write into the shared teacher weights
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    full = student_from_diffusers_unet(teacher, None)  # full fine-tuning: its own copy
    assert not any(p.data_ptr() in ptrs for p in full.parameters())
