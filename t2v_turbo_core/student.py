"""Build a student from a diffusers teacher UNet (ModelScopeT2V's UNet3DConditionModel).

The student has the teacher's config plus `time_cond_proj_dim` (the w projection). It loads
the teacher's weights, zero-initialises the w projection so that it starts as the teacher,
and gets LoRA on every Linear / Conv layer.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from t2v_turbo_core.lora import W_PROJECTION_SUFFIX, LoraSettings, add_lora


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
    student = type(teacher_unet).from_config(config)
    if getattr(student.config, "time_cond_proj_dim", None) != guidance_embedding_dim:
        raise ValueError(f"{type(teacher_unet).__name__} did not take time_cond_proj_dim={guidance_embedding_dim}")
    if extend is not None:
        extend(student)
    missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
    bad_missing = [k for k in missing if W_PROJECTION_SUFFIX not in k.split(".")]
    if bad_missing or unexpected:
        raise ValueError(f"teacher weights do not fit the student: missing {bad_missing[:5]}, unexpected {list(unexpected)[:5]}")
    with torch.no_grad():
        for name, param in student.named_parameters():
            if W_PROJECTION_SUFFIX in name.split("."):
                param.zero_()
    ref = next(teacher_unet.parameters())
    if next(student.parameters()).dtype != ref.dtype or next(student.parameters()).device != ref.device:
        student.to(device=ref.device, dtype=ref.dtype)
    if lora is not None:
        add_lora(student, lora)
    else:
        # Full fine-tuning: every weight trains.
        student.requires_grad_(True)
    return student
