"""Build a student from a diffusers teacher UNet (ModelScopeT2V's UNet3DConditionModel).

The student has the teacher's config plus `time_cond_proj_dim` (the w projection). It takes
the teacher's weights, initialises the w projection (zero by default, so that it starts as the
teacher) and gets LoRA on every Linear / Conv layer.

One UNet in memory: a LoRA student *shares* the teacher's frozen tensors (it is built on the
meta device and the teacher's tensors are assigned into it), so the teacher and the student's
base layers are the same memory; only LoRA and the w projection are new. The teacher of
Algorithm 1 is then the student with its adapters disabled. Only a fully fine-tuned student
(`lora=None`) gets its own copy, since its base weights change while the teacher must not.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from t2v_turbo_core.lora import W_PROJECTION_SUFFIX, LoraSettings, add_lora, init_w_projection
from t2v_turbo_core.models import use_temporal_conv2d


def _is_w_projection(name: str) -> bool:
    return W_PROJECTION_SUFFIX in name.split(".")


def share_teacher_weights(student: nn.Module, teacher: nn.Module, what: str = "student") -> nn.Module:
    """Fill a student built on the meta device with the teacher's own tensors (no copy).

    Every student tensor but the w projection must exist in the teacher with the same shape;
    the w projection is allocated (uninitialised) on the teacher's device and dtype.
    Non-persistent buffers, which no state dict carries, are shared from the teacher too.
    """
    teacher_state = teacher.state_dict()
    expected = student.state_dict()
    missing = sorted(k for k in expected if k not in teacher_state and not _is_w_projection(k))
    unexpected = sorted(k for k in teacher_state if k not in expected)
    shapes = sorted(k for k in teacher_state if k in expected and tuple(expected[k].shape) != tuple(teacher_state[k].shape))
    if missing or unexpected or shapes:
        raise ValueError(f"{what}: teacher weights do not fit the student: missing {missing[:5]}, unexpected {unexpected[:5]}, shapes {shapes[:5]}")
    student.load_state_dict(teacher_state, strict=False, assign=True)
    ref = next(teacher.parameters())
    teacher_buffers = dict(teacher.named_buffers())
    for name, param in list(student.named_parameters()):
        if param.is_meta:
            if not _is_w_projection(name):
                raise ValueError(f"{what}: {name} is not a teacher weight and not the w projection")
            owner, _, leaf = name.rpartition(".")
            module = student.get_submodule(owner) if owner else student
            module._parameters[leaf] = nn.Parameter(torch.empty(param.shape, device=ref.device, dtype=ref.dtype), requires_grad=param.requires_grad)
    for name, buf in list(student.named_buffers()):
        if buf.is_meta:
            if name not in teacher_buffers:
                raise ValueError(f"{what}: buffer {name} has no counterpart in the teacher")
            owner, _, leaf = name.rpartition(".")
            module = student.get_submodule(owner) if owner else student
            module._buffers[leaf] = teacher_buffers[name]
    return student


def student_from_diffusers_unet(
    teacher_unet: nn.Module,
    lora: LoraSettings | None = LoraSettings(),
    guidance_embedding_dim: int = 256,
    extend: Callable[[nn.Module], Any] | None = None,
) -> nn.Module:
    """`extend(student)`, if given, adds to the fresh student what the teacher has beyond its
    config (modules attached after construction), before the teacher's weights load."""
    # Private keys go: diffusers' `_use_default_values` would reset time_cond_proj_dim to None
    # in from_config whenever the teacher was built without naming it.
    config = {k: v for k, v in dict(teacher_unet.config).items() if not k.startswith("_")}
    config["time_cond_proj_dim"] = guidance_embedding_dim
    share = lora is not None
    if share:
        with torch.device("meta"):
            student = type(teacher_unet).from_config(config)
            if extend is not None:
                extend(student)
    else:
        student = type(teacher_unet).from_config(config)
        if extend is not None:
            extend(student)
    if getattr(student.config, "time_cond_proj_dim", None) != guidance_embedding_dim:
        raise ValueError(f"{type(teacher_unet).__name__} did not take time_cond_proj_dim={guidance_embedding_dim}")
    if share:
        share_teacher_weights(student, teacher_unet, f"{type(teacher_unet).__name__} student")
    else:
        missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
        bad_missing = [k for k in missing if not _is_w_projection(k)]
        if bad_missing or unexpected:
            raise ValueError(f"teacher weights do not fit the student: missing {bad_missing[:5]}, unexpected {list(unexpected)[:5]}")
        ref = next(teacher_unet.parameters())
        if next(student.parameters()).dtype != ref.dtype or next(student.parameters()).device != ref.device:
            student.to(device=ref.device, dtype=ref.dtype)
    return finish_student(student, lora)


def finish_student(student: nn.Module, lora: LoraSettings | None) -> nn.Module:
    """The last steps of every student builder, once the teacher's weights are in: the w
    projection's initialisation, then the LoRA adapters (or, with `lora=None`, full
    fine-tuning: every weight trains, and the caller needs a separate frozen teacher)."""
    init_w_projection(student, lora.w_proj_init if lora is not None else "zero")
    # Before LoRA wraps them: peft keeps the base layer's class.
    use_temporal_conv2d(student)
    if lora is not None:
        add_lora(student, lora)
    else:
        student.requires_grad_(True)
    return student
