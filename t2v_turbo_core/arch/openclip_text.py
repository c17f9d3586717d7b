"""The OpenCLIP text tower as LVDM conditions on it (VideoCrafter2's `cond_stage_model`).

LVDM's `FrozenOpenCLIPEmbedder` (`lvdm/modules/encoders/condition.py`; VideoCrafter2's yaml
sets `layer: penultimate`) builds open_clip's ViT-H-14 CLIP, deletes its vision tower and
encodes a prompt as: token + positional embedding -> every residual block but the last
-> `ln_final` (the final LayerNorm *is* applied to the penultimate block's output) -> all 77
token states [B, 77, 1024]; no pooling, no text projection. The weights live in the
checkpoint as `cond_stage_model.model.*` (the CLIP minus `visual`, `logit_scale` included),
so this module keeps that layout under `model.`.

Built from open_clip's config only: never `pretrained=` (that would download).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

# The vision tower is deleted right after construction (as LVDM does); building it at its
# real size would only allocate ViT-H's 632M parameters to throw them away.
_THROWAWAY_VISION_CFG = {"image_size": 14, "layers": 1, "width": 64, "head_width": 64, "patch_size": 14}


def openclip_model_config(name: str = "ViT-H-14") -> dict[str, Any]:
    """open_clip's own architecture config for `name` (bundled with the package, no download)."""
    import open_clip

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ValueError(f"open_clip has no model config named {name!r}")
    return dict(cfg)


class OpenCLIPTextEncoder(nn.Module):
    """Prompts -> [B, context_length, width] OpenCLIP token states (a `TextEncoder`).

    `layer`: "penultimate" (VideoCrafter2) or "last". `model_cfg`: an open_clip model config
    dict (`embed_dim`, `text_cfg`, ...); default ViT-H-14's.
    """

    LAYERS = {"last": 0, "penultimate": 1}

    def __init__(self, model_cfg: Mapping[str, Any] | None = None, layer: str = "penultimate"):
        super().__init__()
        import open_clip

        if layer not in self.LAYERS:
            raise ValueError(f"layer must be one of {sorted(self.LAYERS)}, got {layer!r}")
        cfg = dict(model_cfg) if model_cfg is not None else openclip_model_config("ViT-H-14")
        cfg["vision_cfg"] = dict(_THROWAWAY_VISION_CFG)
        model = open_clip.CLIP(**cfg)
        del model.visual
        # The causal mask is a non-persistent buffer (never in a checkpoint); it is rebuilt
        # per call instead, so that a model built on the meta device needs nothing but its weights.
        if getattr(model, "attn_mask", None) is not None:
            del model.attn_mask
        self.model = model
        self.layer = layer
        self.context_length = int(model.context_length)

    @property
    def num_blocks_used(self) -> int:
        return len(self.model.transformer.resblocks) - self.LAYERS[self.layer]

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        import open_clip

        return open_clip.tokenize(list(prompts), context_length=self.context_length)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        m = self.model
        dtype = m.positional_embedding.dtype
        x = m.token_embedding(tokens.to(m.positional_embedding.device)).to(dtype) + m.positional_embedding
        n = x.shape[1]
        mask = torch.full((n, n), float("-inf"), device=x.device, dtype=dtype).triu_(1)
        batch_first = getattr(m.transformer, "batch_first", True)
        if not batch_first:  # open_clip before 2.2x ran the text transformer sequence-first
            x = x.transpose(0, 1)
        for block in list(m.transformer.resblocks)[: self.num_blocks_used]:
            x = block(x, attn_mask=mask)
        if not batch_first:
            x = x.transpose(0, 1)
        return m.ln_final(x)

    @torch.no_grad()
    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.encode_tokens(self.tokenize(prompts))
