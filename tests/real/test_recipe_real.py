"""The real teachers' students under the released recipe and in one UNet's memory.

Tiny random checkpoints in the official layouts (the builders of test_teachers.py):
* one UNet: the LoRA student's base layers are the teacher's own tensors, and the first
  training step's loss is identical to the two-UNet version (a separate copy of the teacher's
  weights under the student, and either the adapters-off student or a separate frozen
  teacher as Algorithm 1's teacher), with the same seeds;
* w_proj_init=released on VideoCrafter2 (random, frozen, LoRA on it);
* gradient checkpointing of the VideoCrafter2 student, as `bench train` turns it on.
"""

from __future__ import annotations

import copy

import pytest
import torch

from bench.config import ConfigError, load_config
from bench.train import TrainingError, enable_student_checkpointing
from t2v_turbo_core.arch.videocrafter2 import Stage
from t2v_turbo_core.distillation import ConsistencyDistiller, DistillationConfig
from t2v_turbo_core.lora import LoraSettings, trainable_parameters
from t2v_turbo_core.memory import storage_bytes
from t2v_turbo_core.teachers import load_modelscope, load_videocrafter2

from .test_teachers import TINY_VC2, tiny_ms_dir, tiny_vc2_ckpt  # noqa: F401 (fixtures)




def _first_loss(bundle, student, teacher=None, lora_b_seed=5) -> torch.Tensor:
    g = torch.Generator().manual_seed(lora_b_seed)
    with torch.no_grad():  # a student some way into training (B != 0): the target differs from the teacher
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    distiller = ConsistencyDistiller(
        student, bundle.schedule, bundle.text_encoder([""]), DistillationConfig(beta_img=0, beta_vid=0, target="online"),
        teacher=teacher, unet_kwargs=bundle.unet_kwargs,
    )
    hw = (4, 6) if bundle.name == "vc2" else (4, 4)  # a few latent pixels, 3 frames: the layout is what matters
    latents = torch.randn(2, bundle.latent_channels, 3, *hw, generator=torch.Generator().manual_seed(1))
    text = bundle.text_encoder(["a corgi on the beach", "a red car"])
    return distiller.step(latents, text, generator=torch.Generator().manual_seed(2)).loss.detach()


@pytest.mark.parametrize("teacher_name", ["ms", "vc2"])
def test_one_unet_student_gives_the_two_unet_first_loss(teacher_name, request):
    if teacher_name == "ms":
        bundle = load_modelscope(request.getfixturevalue("tiny_ms_dir"))
    else:
        bundle = load_videocrafter2(request.getfixturevalue("tiny_vc2_ckpt"), config=TINY_VC2)
    settings = LoraSettings(rank=4, dropout=0.0)

    torch.manual_seed(0)  # LoRA's A matrices come from the global generator
    one = bundle.make_student(settings).eval()
    ptrs = {p.untyped_storage().data_ptr() for p in bundle.unet.parameters()}
    base = [p for n, p in one.named_parameters() if "lora_" not in n and "cond_proj" not in n]
    assert base and all(p.untyped_storage().data_ptr() in ptrs for p in base)
    unet_bytes = storage_bytes(bundle.unet)
    extra = storage_bytes(bundle.unet, one) - unet_bytes
    lora_bytes = sum(p.numel() * p.element_size() for n, p in one.named_parameters() if "lora_" in n or "cond_proj" in n)
    assert extra == lora_bytes  # only LoRA and the w projection are new memory

    # The two-UNet version: the student sits on its own copy of the teacher's weights.
    copy_of_teacher = copy.deepcopy(bundle.unet)
    two_bundle = copy.copy(bundle)
    two_bundle.unet = copy_of_teacher
    if teacher_name == "ms":
        from t2v_turbo_core.student import student_from_diffusers_unet

        def make(s):
            return student_from_diffusers_unet(copy_of_teacher, s, 256)
    else:
        from t2v_turbo_core.teachers import videocrafter2_student

        def make(s):
            return videocrafter2_student(copy_of_teacher, s, 256)
    torch.manual_seed(0)
    two = make(settings).eval()
    assert storage_bytes(bundle.unet, copy_of_teacher, two) - storage_bytes(bundle.unet, one) == unet_bytes

    loss_one = _first_loss(bundle, one)
    loss_two_adapters_off = _first_loss(bundle, two)
    loss_two_separate_teacher = _first_loss(bundle, two, teacher=bundle.unet)
    assert torch.isfinite(loss_one) and float(loss_one) > 0
    assert torch.equal(loss_one, loss_two_adapters_off)
    assert torch.equal(loss_one, loss_two_separate_teacher)
    # The teacher's weights are what they were: the step wrote nothing into the shared tensors.
    for (name, a), b in zip(bundle.unet.state_dict().items(), copy_of_teacher.state_dict().values()):
        assert torch.equal(a, b), name


def test_vc2_released_w_projection_is_random_frozen_with_lora(tiny_vc2_ckpt):  # noqa: F811
    bundle = load_videocrafter2(tiny_vc2_ckpt, config=TINY_VC2)
    student = bundle.make_student(LoraSettings(rank=4, w_proj_init="released"))
    base = student.cond_proj.base_layer.weight
    assert not base.requires_grad and float(base.detach().abs().sum()) > 0
    assert {"cond_proj.lora_A.default.weight", "cond_proj.lora_B.default.weight"} <= set(trainable_parameters(student))
    zero = bundle.make_student(LoraSettings(rank=4))
    assert "cond_proj.weight" in trainable_parameters(zero) and float(zero.cond_proj.weight.detach().abs().sum()) == 0


def test_grad_checkpointing_turns_on_the_vc2_students_and_is_refused_elsewhere(tiny_vc2_ckpt, tiny_ms_dir):  # noqa: F811
    bundle = load_videocrafter2(tiny_vc2_ckpt, config=TINY_VC2)
    student = bundle.make_student(LoraSettings(rank=4)).train()
    stages = [m for m in student.modules() if isinstance(m, Stage)]
    assert stages and not any(s.gradient_checkpointing for s in stages)
    enable_student_checkpointing(student)
    assert all(s.gradient_checkpointing for s in stages)
    assert load_config("vc2").grad_checkpointing is True  # the released VC2 recipe has it on
    ms_student = load_modelscope(tiny_ms_dir).make_student(LoraSettings(rank=4))
    with pytest.raises(TrainingError, match="no gradient checkpointing"):
        enable_student_checkpointing(ms_student)
    with pytest.raises(ConfigError, match="grad_checkpointing"):
        load_config("ms", ["grad_checkpointing=true"])
