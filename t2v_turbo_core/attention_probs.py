"""Recording the attention probabilities of chosen layers of a video UNet.

T2V-Turbo-v2's motion guidance (MotionClone-style) compares the temporal self-attention
maps softmax(q k^T / sqrt(d)) of a reference video and of the noisy latent being denoised.
Neither UNet exposes those maps: diffusers' `Attention` and VideoCrafter2's LVDM
`Attention` (ours in `arch/videocrafter2.py`) both call fused scaled-dot-product attention.

`AttentionProbabilities` installs, for the duration of a `with` block, a recorder on each
chosen layer:

* diffusers `Attention` (ModelScopeT2V / the tiny world's `UNet3DConditionModel`): the
  layer's processor is swapped for `RecordingAttnProcessor`, which computes the
  probabilities explicitly and uses them for the output (so what is recorded is what the
  layer used); the original processor is restored on exit.
* VideoCrafter2's `Attention`: a forward hook recomputes q and k from the layer's own input
  and stores their softmax. The layer's output still comes from the unchanged SDPA path, so
  outputs are bitwise identical with recording on or off; the cost (two small projections
  and an F x F softmax per temporal layer) is paid only while recording.

Recorded maps keep the autograd graph, so an energy built from them can be differentiated
with respect to the UNet's input latent. Each forward call overwrites a layer's entry.
Shapes: `[batch, heads, queries, keys]`; for temporal attention batch = B * h * w and
queries = keys = frames.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from t2v_turbo_core.arch.videocrafter2 import Attention as VC2Attention
from t2v_turbo_core.arch.videocrafter2 import TemporalTransformer, VideoCrafter2UNet


_PLAIN_PROCESSORS = {"AttnProcessor", "AttnProcessor2_0"}


def decoder_temporal_attention_layers(unet: nn.Module) -> list[str]:
    """Names of the first self-attention (attn1) of every temporal transformer in the decoder.

    VideoCrafter2 (LVDM names): `output_blocks.{i}.{j}.transformer_blocks.0.attn1` for every
    temporal transformer j of output block i; with VideoCrafter2's config these are exactly
    the nine maps T2V-Turbo-v2's released code records (output_blocks 3-11, layer 2).
    diffusers UNet3DConditionModel: `up_blocks.{i}.temp_attentions.{j}.transformer_blocks.0.attn1`.
    """
    names: list[str] = []
    if isinstance(unet, VideoCrafter2UNet):
        for name, module in unet.named_modules():
            if name.startswith("output_blocks.") and isinstance(module, TemporalTransformer):
                names.append(f"{name}.transformer_blocks.0.attn1")
    else:
        for name, _ in unet.named_modules():
            if name.startswith("up_blocks.") and ".temp_attentions." in name and name.endswith("transformer_blocks.0.attn1"):
                names.append(name)
    if not names:
        raise ValueError(f"{type(unet).__name__} has no temporal attention layers in its decoder")
    return names


def attention_probabilities(query: torch.Tensor, key: torch.Tensor, scale: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T * scale (+ mask)) over the key axis; q, k: [..., n, d] -> [..., n_q, n_k]."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores + mask
    return scores.softmax(dim=-1)


class RecordingAttnProcessor:
    """A diffusers attention processor that computes and records the attention probabilities.

    Mirrors diffusers' `AttnProcessor2_0` (spatial/group norm, 4-D inputs, cross-attention
    norm, q/k norms, masks, residual, output rescale) but with the probabilities computed
    explicitly, in the query's dtype, with the layer's own `attn.scale`.
    """

    def __init__(self, name: str, store: dict[str, torch.Tensor]):
        self.name = name
        self.store = store

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)

        probs = attention_probabilities(query, key, attn.scale, attention_mask)
        self.store[self.name] = probs
        hidden_states = torch.matmul(probs, value)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _vc2_hook(name: str, store: dict[str, torch.Tensor]):
    def hook(module: VC2Attention, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
        x = args[0]
        context = args[1] if len(args) > 1 else kwargs.get("context")
        context = x if context is None else context
        b = x.shape[0]

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], module.heads, module.dim_head).transpose(1, 2)

        # The same q, k the layer's SDPA call used, with LVDM's scale 1/sqrt(dim_head).
        store[name] = attention_probabilities(heads(module.to_q(x)), heads(module.to_k(context)), module.dim_head**-0.5)

    return hook


class AttentionProbabilities:
    """Context manager: `with AttentionProbabilities(unet) as rec: unet(...); rec.maps[name]`.

    `layers`: module names to record (default: `decoder_temporal_attention_layers(unet)`).
    Supported layers: diffusers `Attention` and VideoCrafter2's `Attention`.
    """

    def __init__(self, unet: nn.Module, layers: Sequence[str] | None = None):
        self.unet = unet
        self.layers = list(layers) if layers is not None else decoder_temporal_attention_layers(unet)
        modules = dict(unet.named_modules())
        missing = [n for n in self.layers if n not in modules]
        if missing:
            raise ValueError(f"no such attention layers in {type(unet).__name__}: {missing}")
        self._modules = {n: modules[n] for n in self.layers}
        for n, m in self._modules.items():
            if not (isinstance(m, VC2Attention) or hasattr(m, "set_processor")):
                raise ValueError(f"layer {n} is a {type(m).__name__}, not an attention layer this recorder supports")
            # The explicit path reproduces diffusers' plain processors only; replacing another
            # (a custom or LoRA processor) would silently change what the layer computes.
            name = type(getattr(m, "processor", None)).__name__
            if not isinstance(m, VC2Attention) and name not in _PLAIN_PROCESSORS:
                raise ValueError(f"layer {n} uses the attention processor {name}; recording supports {sorted(_PLAIN_PROCESSORS)}")
        self.maps: dict[str, torch.Tensor] = {}
        self._restore: list[Any] = []

    def __enter__(self) -> "AttentionProbabilities":
        self.maps.clear()
        for name, module in self._modules.items():
            if isinstance(module, VC2Attention):
                handle = module.register_forward_hook(_vc2_hook(name, self.maps), with_kwargs=True)
                self._restore.append(handle.remove)
            else:
                previous = module.processor
                module.set_processor(RecordingAttnProcessor(name, self.maps))
                self._restore.append(lambda module=module, previous=previous: module.set_processor(previous))
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._restore:
            self._restore.pop()()

    def ordered(self) -> list[torch.Tensor]:
        """The maps of the last forward call in layer order; refuses if a layer did not run."""
        missing = [n for n in self.layers if n not in self.maps]
        if missing:
            raise RuntimeError(f"no attention probabilities were recorded for {missing} (did the UNet run?)")
        return [self.maps[n] for n in self.layers]


def record(unet: nn.Module, call: Any, layers: Iterable[str] | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
    """Run `call()` (a UNet forward) while recording; returns (its output, {layer: probs})."""
    with AttentionProbabilities(unet, None if layers is None else list(layers)) as rec:
        out = call()
        maps = dict(zip(rec.layers, rec.ordered()))
    return out, maps
