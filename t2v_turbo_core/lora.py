"""The student: teacher weights + LoRA (peft) + a guidance-scale projection.

T2V-Turbo's public recipe puts LoRA (rank 64, alpha = rank, dropout 0.1; rank 32 for the
ModelScope student) on every Linear and Conv layer of the UNet, and adds a bias-free linear
projection of the guidance-scale embedding to the timestep embedding (diffusers'
`time_cond_proj_dim=256`). That projection starts at zero, so before training the student
computes exactly the teacher's function. After training the LoRA is merged, so one student
step costs exactly one teacher step.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import nn

from t2v_turbo_core.models import TemporalConv3d

# The w projection in diffusers' TimestepEmbedding; trained in full, never LoRA-wrapped.
W_PROJECTION_SUFFIX = "cond_proj"
LORA_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


W_PROJECTION_INITS = ("zero", "released")


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 64
    alpha: float | None = None  # None -> alpha = rank (public recipe)
    dropout: float = 0.1
    # The w projection: "zero" (this project's default) starts it at zero and trains it in
    # full, so the student starts as exactly the teacher; "released" is T2V-Turbo's released
    # code: PyTorch's default random init (drawn here from a fixed seed), frozen, with a LoRA
    # on it like every other layer.
    w_proj_init: str = "zero"

    def __post_init__(self):
        if self.w_proj_init not in W_PROJECTION_INITS:
            raise ValueError(f"w_proj_init={self.w_proj_init!r} (use {' or '.join(map(repr, W_PROJECTION_INITS))})")


# Seed of the released-style random w projection: fixed, so that every process of a run
# (and every run) starts from the same frozen matrix; the adapter file stores it anyway.
W_PROJECTION_SEED = 0


def init_w_projection(model: nn.Module, mode: str = "zero", seed: int = W_PROJECTION_SEED) -> None:
    """Set the w projection's initial weights: zeros, or nn.Linear's default init (released code).

    nn.Linear's default is kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    if mode not in W_PROJECTION_INITS:
        raise ValueError(f"w_proj_init={mode!r} (use {' or '.join(map(repr, W_PROJECTION_INITS))})")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if W_PROJECTION_SUFFIX not in name.split("."):
                continue
            if mode == "zero":
                param.zero_()
            else:
                values = torch.empty(param.shape, dtype=torch.float32)
                torch.nn.init.kaiming_uniform_(values, a=math.sqrt(5), generator=generator)
                param.copy_(values)


def lora_target_modules(model: nn.Module, exclude_suffixes: Iterable[str] = (W_PROJECTION_SUFFIX,)) -> list[str]:
    """Names of every Linear / Conv layer of `model` except the w projection (by default)."""
    exclude = tuple(exclude_suffixes)
    return [
        name
        for name, module in model.named_modules()
        if name and isinstance(module, LORA_LAYER_TYPES) and not (exclude and name.endswith(exclude))
    ]


def w_projection_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if W_PROJECTION_SUFFIX in n.split(".")}


def add_lora(model: nn.Module, settings: LoraSettings = LoraSettings(), target_modules: list[str] | None = None) -> nn.Module:
    """Inject LoRA adapters in place; freeze everything but LoRA and (w_proj_init "zero") the
    w projection. With w_proj_init "released" the w projection is frozen and gets a LoRA too."""
    from peft import LoraConfig, inject_adapter_in_model

    released = settings.w_proj_init == "released"
    if target_modules is not None:
        targets = target_modules
    else:
        targets = lora_target_modules(model, exclude_suffixes=() if released else (W_PROJECTION_SUFFIX,))
    if not targets:
        raise ValueError("no Linear/Conv layers found to put LoRA on")
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha if settings.alpha is not None else settings.rank,
        lora_dropout=settings.dropout,
        # Exact names, so that no layer is matched by accident.
        target_modules=f"^({'|'.join(n.replace('.', '[.]') for n in targets)})$",
        init_lora_weights=True,  # B = 0: the adapter starts as the identity
    )
    inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name or (not released and W_PROJECTION_SUFFIX in name.split(".")))
    return model


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def tuner_layers(model: nn.Module) -> list[nn.Module]:
    """Every peft adapter layer of `model`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


@contextlib.contextmanager
def adapters_disabled(model: nn.Module, layers: list[nn.Module] | None = None) -> Iterator[nn.Module]:
    """Run the base (teacher) weights: LoRA off. Callers also pass no w embedding.

    This is how the LCM-LoRA recipes get the teacher without a second copy of the UNet.
    `layers`: `tuner_layers(model)`, when the caller keeps that list (a training loop).
    """
    layers = tuner_layers(model) if layers is None else layers
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)


# How a LoRA layer computes its output while it trains (`DistillationConfig.lora_forward`):
# "adapter" is peft's layer forward, W x + s B (A (dropout x)): three products per layer;
# "merged" forms W + s B A once per call and applies it in one product, the same function up
# to float rounding, where it is exact: no LoRA dropout drawn (p = 0, or eval mode), plain LoRA
# on an ungrouped Linear / Conv. Elsewhere a layer keeps peft's forward.
LORA_FORWARDS = ("merged", "adapter")


def _mergeable(layer: nn.Module) -> str | None:
    """The adapter a peft LoRA layer can run merged per call (plain LoRA, one active adapter,
    on an ungrouped Linear / Conv), or None: it keeps peft's forward. What may change between
    calls (dropout's mode, adapters switched off or merged) is `_merged_now`'s to check."""
    from peft.tuners.lora.layer import Conv1d, Conv2d, Conv3d, Linear

    if type(layer) not in (Linear, Conv1d, Conv2d, Conv3d):
        return None
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(active) != 1 or active[0] in layer.lora_variant or getattr(layer, "fan_in_fan_out", False):
        return None
    adapter = active[0]
    base, lora_a, lora_b = layer.get_base_layer(), layer.lora_A[adapter], layer.lora_B[adapter]
    if type(base) not in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, TemporalConv3d) or getattr(base, "groups", 1) != 1:
        return None
    if lora_a.bias is not None or lora_b.bias is not None or lora_a.weight.dtype != base.weight.dtype:
        return None
    return adapter


def _merged_now(layer: nn.Module, adapter: str) -> bool:
    """Whether this call is exactly W + s B A: the adapter on, not merged in place, and no
    dropout drawn on its input."""
    if layer.disable_adapters or layer.merged or layer.active_adapters != [adapter]:
        return False
    dropout = layer.lora_dropout[adapter]
    return not (isinstance(dropout, nn.Dropout) and dropout.p > 0 and dropout.training)


def merged_weight(layer: nn.Module, adapter: str) -> torch.Tensor:
    """W + scaling * B A of one LoRA layer (differentiable in A and B), in W's shape: for a
    convolution, A is a conv with W's kernel and B a 1x1 conv, so B A is one matrix product over
    the rank."""
    weight = layer.get_base_layer().weight
    a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
    return weight + layer.scaling[adapter] * (b.flatten(1) @ a.flatten(1)).view_as(weight)


def _merged_call(layer: nn.Module, adapter: str):
    peft_forward = layer.forward

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or not _merged_now(layer, adapter):
            return peft_forward(x, *args, **kwargs)
        base = layer.get_base_layer()
        weight = merged_weight(layer, adapter)
        if isinstance(base, nn.Linear):
            return nn.functional.linear(x, weight, base.bias)
        return base._conv_forward(x, weight, base.bias)

    return forward


@contextlib.contextmanager
def merged_lora_forward(model: nn.Module, layers: list[nn.Module] | None = None) -> Iterator[nn.Module]:
    """Inside, every LoRA layer of `model` that can (`_mergeable`; `_merged_now` at each call) computes
    its output with the per-call merged weight W + s B A: one matrix product or convolution where
    peft's forward makes three. The function is the same up to float rounding and gradients flow
    to A and B through the merged weight; on a small UNet it is 1.4x faster without gradients
    and 1.2x with (benchmarks/speed_memory.py). Nothing is merged in place: W is never written.
    `layers`: `tuner_layers(model)`, when the caller keeps that list.
    """
    layers = tuner_layers(model) if layers is None else layers
    patched = []
    for layer in layers:
        adapter = _mergeable(layer) if "forward" not in vars(layer) else None
        if adapter is not None:
            layer.forward = _merged_call(layer, adapter)  # an instance attribute: nn.Module calls it
            patched.append(layer)
    try:
        yield model
    finally:
        for layer in patched:
            vars(layer).pop("forward", None)


def is_fully_fine_tuned(model: nn.Module) -> bool:
    """A student without adapters whose every weight trains (T2V-Turbo-v2's full fine-tuning)."""
    params = list(model.named_parameters())
    return bool(params) and not any("lora_" in n for n, _ in params) and all(p.requires_grad for _, p in params)


def student_state_dict(model: nn.Module, names_only: bool = False) -> dict[str, torch.Tensor]:
    """The student's own weights (what gets saved): LoRA matrices and the w projection, or every
    weight of a fully fine-tuned student (`is_fully_fine_tuned`). names_only: the names (values None)."""
    full = is_fully_fine_tuned(model)
    return {n: (None if names_only else p.detach().cpu().contiguous()) for n, p in model.named_parameters()
            if full or "lora_" in n or W_PROJECTION_SUFFIX in n.split(".")}


def save_student(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None,
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """Write the LoRA adapter + w projection (or a fully fine-tuned student's every weight) as
    safetensors (atomically). `state`: the model's full state dict gathered from a sharded model
    (FSDP, DeepSpeed ZeRO), whose values are written instead of this process's local shards."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    own = student_state_dict(model) if state is None else \
        {n: state[n].detach().cpu().contiguous() for n in student_state_dict(model, names_only=True)}
    save_file(own, str(tmp), metadata=metadata or {})
    tmp.replace(path)


def load_student(model: nn.Module, path: str | Path) -> None:
    """Load weights written by `save_student` into a model built with the same LoRA settings."""

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"student adapter not found: {path}")
    from t2v_turbo_core.safe_io import load_safetensors

    state = load_safetensors(path)  # a truncated file: an error naming it
    expected = student_state_dict(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path}: adapter does not match the student "
            f"(missing {len(missing)}: {missing[:3]}, unexpected {len(unexpected)}: {unexpected[:3]})"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            if params[name].shape != value.shape:
                raise ValueError(f"{path}: {name} has shape {tuple(value.shape)}, student expects {tuple(params[name].shape)}")
            params[name].copy_(value)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base layer and remove the adapter (in place).

    Uses peft's own merge arithmetic (W + scale * B @ A); the result is a plain model whose
    forward costs exactly the teacher's.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if not isinstance(module, BaseTunerLayer):
            continue
        module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return model


class EMATarget:
    """theta^- of the paper's Algorithm 1: an exponential moving average of the trainable weights.

    Only the trainable tensors (LoRA, w projection) are shadowed; the target forward swaps
    them into the student for one no-grad call, so no second UNet is held in memory.
    """

    def __init__(self, params: dict[str, nn.Parameter], decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.params = params
        self.shadow = {n: p.detach().clone() for n, p in params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for name, param in self.params.items():
            self.shadow[name].mul_(self.decay).add_(param.detach(), alpha=1.0 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        backup = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(backup[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: t.clone() for n, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("EMA state does not match the student's trainable parameters")
        for name, value in state.items():
            self.shadow[name].copy_(value)
