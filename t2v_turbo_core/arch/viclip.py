"""ViCLIP (InternVid): a CLIP ViT-L/14 with joint space-time attention, and its text tower.

Written from the structure of `viclip/viclip.py`, `viclip_vision.py` and `viclip_text.py`
(OpenGVLab/InternVideo `Data/InternVid/viclip/`; the copy in Ji4chenLi/t2v-turbo) so that
the `['model']` state dict of `ViClip-InternVid-10M-FLT.pth` loads strictly: every
parameter keeps the official name.

Facts the reward depends on (all from that code):
* vision: a 3D patch embedding `conv1` with kernel (1, 14, 14) and no bias, one class token
  `class_embedding` with the spatial position `positional_embedding[0]`, patches with
  `positional_embedding[1:]` plus a learned `temporal_positional_embedding` [1, 8, width]
  per frame (the class token gets none), then `ln_pre`, one transformer over all
  1 + 8 x 256 tokens (joint space-time attention), `ln_post` on the class token and `proj`.
  Tokens are ordered patch-major, frame-minor as in the official rearrange.
* both towers use QuickGELU MLPs (`c_fc`, `c_proj`) and `nn.MultiheadAttention`-named
  attention weights (`attn.in_proj_weight`, `attn.in_proj_bias`, `attn.out_proj`).
* text: the CLIP text transformer with a causal mask, context length 32 (not 77),
  features at the end-of-text token (the largest id), `ln_final`, `text_projection`.
* `temp`: the contrastive temperature, kept so that the checkpoint loads strictly.

Attention runs through `F.scaled_dot_product_attention` (no fused-kernel dependency).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class ViCLIPConfig:
    """Sizes of ViCLIP; defaults are ViCLIP-L (`clip_joint_l14` + `clip_text_l14`, max_txt_l 32)."""

    image_size: int = 224
    patch_size: int = 14
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    num_frames: int = 8
    embed_dim: int = 768
    context_length: int = 32
    vocab_size: int = 49408
    text_width: int = 768
    text_heads: int = 12
    text_layers: int = 12

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation OpenAI CLIP and ViCLIP were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter names, batch-first."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, n, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])
        # Activation checkpointing per block (the official vision tower checkpoints all 24).
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled() and x.requires_grad:
                x = checkpoint(block, x, causal, use_reentrant=False)
            else:
                x = block(x, causal=causal)
        return x


class ViCLIPVisionTransformer(nn.Module):
    """`clip_joint_l14`: joint space-time ViT over [B, 3, T, H, W] -> [B, embed_dim]."""

    def __init__(self, cfg: ViCLIPConfig):
        super().__init__()
        w, p = cfg.vision_width, cfg.patch_size
        self.num_frames = cfg.num_frames
        self.conv1 = nn.Conv3d(3, w, kernel_size=(1, p, p), stride=(1, p, p), bias=False)
        scale = w**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid_size**2 + 1, w))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, cfg.num_frames, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, cfg.vision_layers, cfg.vision_heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, cfg.embed_dim))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.conv1(video)  # [B, W, T, g, g]
        b, w, t, gh, gw = x.shape
        if t != self.num_frames:
            raise ValueError(f"ViCLIP takes {self.num_frames} frames, got {t}")
        # [B, T, N, W] with the spatial position embedding on the patches, then the temporal one.
        x = x.permute(0, 2, 3, 4, 1).reshape(b, t, gh * gw, w)
        x = x + self.positional_embedding[1:].to(x.dtype)
        x = x + self.temporal_positional_embedding.to(x.dtype)[:, :, None, :]
        # Patch-major, frame-minor token order, as `rearrange(... '(b n) t m -> b (n t) m')`.
        x = x.transpose(1, 2).reshape(b, gh * gw * t, w)
        cls = (self.class_embedding + self.positional_embedding[0]).to(x.dtype).expand(b, 1, w)
        x = self.ln_pre(torch.cat([cls, x], dim=1))
        x = self.transformer(x)
        return self.ln_post(x[:, 0]) @ self.proj


class ViCLIPTextTransformer(nn.Module):
    """`clip_text_l14` with context length 32: token ids [B, L] -> [B, embed_dim]."""

    def __init__(self, cfg: ViCLIPConfig):
        super().__init__()
        self.context_length = cfg.context_length
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.text_width))
        self.transformer = Transformer(cfg.text_width, cfg.text_layers, cfg.text_heads)
        self.ln_final = nn.LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(torch.empty(cfg.text_width, cfg.embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=cfg.text_width**-0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        x = self.ln_final(self.transformer(x, causal=True))
        # The end-of-text token has the largest id of the vocabulary (CLIP's pooling rule).
        eot = ids.argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection


class ViCLIP(nn.Module):
    """The two towers under the official top-level names (`vision_encoder`, `text_encoder`, `temp`)."""

    def __init__(self, cfg: ViCLIPConfig = ViCLIPConfig()):
        super().__init__()
        self.config = cfg
        self.vision_encoder = ViCLIPVisionTransformer(cfg)
        self.text_encoder = ViCLIPTextTransformer(cfg)
        # Contrastive temperature (init 1/100 officially); unused for scoring.
        self.temp = nn.Parameter(torch.tensor(0.01))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the vision blocks' activations in backward (T2V-Turbo's ViCLIP runs with
        `vision_encoder_checkpoint_num = 24`, i.e. every block): less memory for the pixel
        gradient, one more forward."""
        self.vision_encoder.transformer.grad_checkpointing = enable

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised frames [B, T, 3, H, W] -> video features [B, embed_dim] (not normalised)."""
        return self.vision_encoder(frames.permute(0, 2, 1, 3, 4))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, context_length] -> text features [B, embed_dim] (not normalised)."""
        return self.text_encoder(ids)
