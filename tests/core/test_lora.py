"""Student construction, LoRA merge (peft's arithmetic) and adapter save/load."""

import pytest
import torch
from torch import nn

from t2v_turbo_core.lora import (
    LoraSettings,
    adapters_disabled,
    load_student,
    lora_target_modules,
    merge_lora,
    merged_lora_forward,
    merged_weight,
    save_student,
    trainable_parameters,
)
from t2v_turbo_core.models import predict_noise
from t2v_turbo_core.schedule import guidance_scale_embedding
from t2v_turbo_core.student import student_from_diffusers_unet

from .conftest import TEXT_DIM


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 4, 3, 4, 4, generator=g)
    t = torch.tensor([999, 259])
    c = torch.randn(2, 5, TEXT_DIM, generator=g)
    w = guidance_scale_embedding(torch.tensor([5.0, 9.0]))
    return z, t, c, w


def _randomize_lora(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name or "cond_proj" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_student_starts_as_teacher_and_trains_only_lora_and_w_projection(tiny_unet3d):
    teacher = tiny_unet3d()
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, dropout=0.0)).eval()
    z, t, c, w = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(predict_noise(student, z, t, c, w), predict_noise(teacher, z, t, c, None))
    names = set(trainable_parameters(student))
    assert names and all(("lora_" in n) or ("cond_proj" in n) for n in names)
    assert any("cond_proj" in n for n in names)
    # Every Linear/Conv layer of the teacher got an adapter (conv_in, temporal convs, attention, ...).
    targets = lora_target_modules(teacher)
    assert any("temp_convs" in n for n in targets) and any("attn" in n for n in targets) and "conv_in" in targets


class _ChannelShift(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x + self.shift.view(1, -1, 1, 1)


def _grow(unet):
    # A module attached after construction: from_config cannot rebuild it.
    unet.conv_act = nn.Sequential(unet.conv_act, _ChannelShift(unet.config.block_out_channels[0]))


def test_student_takes_what_the_teacher_has_beyond_its_config_only_through_extend(tiny_unet3d):
    teacher = tiny_unet3d()
    _grow(teacher)
    with torch.no_grad():
        teacher.conv_act[1].shift.normal_()
    teacher.eval()
    with pytest.raises(ValueError, match="unexpected"):
        student_from_diffusers_unet(teacher, None)
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, dropout=0.0), extend=_grow).eval()
    z, t, c, w = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(predict_noise(student, z, t, c, w), predict_noise(teacher, z, t, c, None))


def test_adapters_disabled_is_the_teacher(tiny_unet3d):
    teacher = tiny_unet3d()
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, dropout=0.0)).eval()
    _randomize_lora(student)
    z, t, c, w = _inputs()
    with torch.no_grad():
        moved = predict_noise(student, z, t, c, w)
        with adapters_disabled(student):
            base = predict_noise(student, z, t, c, None)
        ref = predict_noise(teacher, z, t, c, None)
    torch.testing.assert_close(base, ref)
    assert (moved - ref).abs().max() > 1e-4  # the randomised adapter does change the function


def test_merged_lora_equals_unmerged_adapter(tiny_unet3d):
    """peft's merge: W' = W + (alpha / r) B A. Tolerance 1e-5 absolute (fp32 re-association)."""
    teacher = tiny_unet3d()
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, alpha=8, dropout=0.1)).eval()
    _randomize_lora(student)
    z, t, c, w = _inputs()
    with torch.no_grad():
        before = predict_noise(student, z, t, c, w)
        merge_lora(student)
        after = predict_noise(student, z, t, c, w)
    assert not any("lora_" in n for n, _ in student.named_parameters())
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in teacher.parameters()) + 256 * 8
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


@pytest.mark.parametrize("layer", [nn.Linear(6, 5), nn.Conv2d(3, 4, 3, padding=1), nn.Conv3d(3, 4, (3, 1, 1), padding=(1, 0, 0))],
                         ids=["linear", "conv2d", "conv3d"])
def test_merged_weight_is_peft_merge(layer):
    """W + s B A per layer type, against peft's own delta (`get_delta_weight`, what merge adds)."""
    from peft import LoraConfig, inject_adapter_in_model

    holder = nn.Module()
    holder.layer = layer
    inject_adapter_in_model(LoraConfig(r=2, lora_alpha=6, target_modules=["layer"]), holder)
    _randomize_lora(holder)
    lora = holder.layer
    expected = lora.get_base_layer().weight + lora.get_delta_weight("default")
    torch.testing.assert_close(merged_weight(lora, "default"), expected, rtol=0, atol=1e-6)


def _student_io(tiny_unet3d, dropout):
    teacher = tiny_unet3d()
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, alpha=8, dropout=dropout))
    _randomize_lora(student)
    return student, _inputs()


def _grads(student, z, t, c, w):
    student.zero_grad(set_to_none=True)
    out = predict_noise(student, z, t, c, w)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in trainable_parameters(student).items()}


def test_merged_lora_forward_is_peft_forward_in_value_and_gradient(tiny_unet3d):
    """The per-call merged weight W + s B A gives peft's function and gradients (to float
    rounding), writes no weight, and leaves peft's forward in place afterwards."""
    student, (z, t, c, w) = _student_io(tiny_unet3d, dropout=0.0)
    student.train()
    weights = {n: p.detach().clone() for n, p in student.named_parameters()}
    torch.manual_seed(0)  # the UNet's own dropout (temporal convs) draws the same in both
    ref, ref_grads = _grads(student, z, t, c, w)
    calls = []
    import t2v_turbo_core.lora as lora_module

    real = lora_module.merged_weight
    lora_module.merged_weight = lambda layer, adapter: calls.append(layer) or real(layer, adapter)
    try:
        with merged_lora_forward(student):
            torch.manual_seed(0)
            out, grads = _grads(student, z, t, c, w)
    finally:
        lora_module.merged_weight = real
    layers = [m for m in student.modules() if hasattr(m, "lora_A")]
    assert sorted(map(id, calls)) == sorted(map(id, layers))  # every LoRA layer ran merged, once
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6)
    assert all(torch.equal(p, weights[n]) for n, p in student.named_parameters())
    assert not any("forward" in vars(m) for m in student.modules())


def test_merged_lora_forward_keeps_peft_forward_where_dropout_is_drawn(tiny_unet3d):
    """With LoRA dropout in train mode the merged weight is not the function (dropout acts on the
    adapter's input only): every layer keeps peft's forward, bit for bit. In eval mode it merges."""
    student, (z, t, c, w) = _student_io(tiny_unet3d, dropout=0.5)
    student.train()
    with torch.no_grad():
        torch.manual_seed(3)
        ref = predict_noise(student, z, t, c, w)
        with merged_lora_forward(student):
            torch.manual_seed(3)
            same = predict_noise(student, z, t, c, w)
        assert torch.equal(same, ref)
        student.eval()
        peft_eval = predict_noise(student, z, t, c, w)
        with merged_lora_forward(student):
            merged_eval = predict_noise(student, z, t, c, w)
    torch.testing.assert_close(merged_eval, peft_eval, rtol=1e-5, atol=1e-5)
    assert (ref - peft_eval).abs().max() > 1e-4  # dropout did act in train mode


def test_save_and_load_student_round_trip(tiny_unet3d, tmp_path):
    teacher = tiny_unet3d()
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, dropout=0.0)).eval()
    _randomize_lora(student)
    path = tmp_path / "student.safetensors"
    save_student(student, path)
    fresh = student_from_diffusers_unet(tiny_unet3d(), LoraSettings(rank=4, dropout=0.0)).eval()
    load_student(fresh, path)
    z, t, c, w = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(predict_noise(fresh, z, t, c, w), predict_noise(student, z, t, c, w))
    other_rank = student_from_diffusers_unet(tiny_unet3d(), LoraSettings(rank=2))
    with pytest.raises(ValueError, match="shape"):
        load_student(other_rank, path)
    with pytest.raises(FileNotFoundError):
        load_student(fresh, tmp_path / "missing.safetensors")


def test_student_gets_w_projection_when_teacher_config_used_defaults():
    """Regression: diffusers' `_use_default_values` made from_config drop time_cond_proj_dim."""
    from diffusers import UNet3DConditionModel

    teacher = UNet3DConditionModel(
        sample_size=4, down_block_types=("DownBlock3D", "CrossAttnDownBlock3D"),
        up_block_types=("CrossAttnUpBlock3D", "UpBlock3D"), block_out_channels=(8, 16), layers_per_block=1,
        cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=4,
    )
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=2))
    assert student.config.time_cond_proj_dim == 256
    assert student.time_embedding.cond_proj is not None
