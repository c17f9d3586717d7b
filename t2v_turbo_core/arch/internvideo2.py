"""InternVideo2 Stage-2 (1B): the video tower used for retrieval features, and its BERT text tower.

Written from the structure of `models/backbones/internvideo2/internvideo2.py`,
`models/internvideo2_stage2*.py` and `models/backbones/bert/xbert.py`
(OpenGVLab/InternVideo `InternVideo2/multi_modality`; the copy in Ji4chenLi/t2v-turbo's
`intern_vid2/`), so that the `['module']` state dict of `InternVideo2-stage2_1b-224p-f4.pt`
loads under the official names.

Vision (`pretrain_internvideo2_1b_patch14_224`): a 3D patch embedding (tubelet 1, patch 14,
with bias), a class token, one joint space-time position table `pos_embed` for
1 + T x 16 x 16 tokens (a separate `img_pos_embed` for single images), 40 pre-norm blocks
of width 1408 (16 heads of 88, qkv without bias, RMSNorm (eps 1e-6) before attention and
MLP and on the full-width q and k, LayerScale `ls1`/`ls2`, MLP 1408 -> 6144 -> 1408), no
final norm, then `clip_projector`: attention pooling whose query is the token mean
(LayerNorms on q/k/v, 16 heads, output 768). `vision_proj` maps 768 -> 512.

Text (`bert_large`, `fusion_layer` 19): BERT-large; retrieval features run only the first
19 layers (xbert's `mode="text"`), take the [CLS] token and `text_proj` (1024 -> 512).

Not built here, because retrieval features never use them (the loader accounts for their
keys): the UMT distillation heads `clip_decoder.*`, `final_clip_decoder.*`,
`clip_pos_embed`, `clip_img_pos_embed`; BERT layers >= 19 and their cross-attention (the
video-text fusion encoder); the MLM head `text_encoder.cls.*`; `itm_head`; `temp`.

No flash-attn: attention is `F.scaled_dot_product_attention`. The official code with
`use_fused_mlp=True` (t2v-turbo's reward config, half precision) runs flash-attn's
FusedMLP, whose activation is the tanh approximation of GELU; with `use_fused_mlp=False`
(the official demo config) it is the exact GELU. `mlp_gelu_approximate` picks; "tanh" is
the default because that is how T2V-Turbo evaluates the reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# Checkpoint parts that retrieval features never use (training heads; see the module doc).
UNUSED_VISION_KEYS = ("clip_decoder.", "final_clip_decoder.", "clip_pos_embed", "clip_img_pos_embed")


@dataclass(frozen=True)
class InternVideo2Config:
    """Sizes of InternVideo2 Stage-2; defaults are the 1B model with BERT-large.

    Sources: `pretrain_internvideo2_1b_patch14_224` (embed 1408, depth 40, 16 heads,
    mlp_ratio 48/11 -> 6144, attn_pool_num_heads 16, qk_normalization, init_values 1e-5),
    `internvideo2_stage2_config.py` (clip_embed_dim 768, embed_dim 512, max_txt_l 40,
    sep_image_video_pos_embed, 4 frames: `-f4`), `config_bert_large.json` and
    `TextEncoders["bert_large"]` (fusion_layer 19).
    """

    image_size: int = 224
    patch_size: int = 14
    num_frames: int = 4
    tubelet_size: int = 1
    width: int = 1408
    depth: int = 40
    heads: int = 16
    mlp_hidden: int = 6144
    clip_embed_dim: int = 768
    attn_pool_heads: int = 16
    embed_dim: int = 512
    sep_image_video_pos_embed: bool = True
    mlp_gelu_approximate: str = "tanh"
    # BERT-large (`config_bert_large.json`).
    text_vocab_size: int = 30522
    text_width: int = 1024
    text_layers: int = 24
    text_heads: int = 16
    text_intermediate: int = 4096
    text_max_positions: int = 512
    text_type_vocab_size: int = 2
    text_layer_norm_eps: float = 1e-12
    fusion_layer: int = 19
    max_text_length: int = 40

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def temporal_size(self) -> int:
        return self.num_frames // self.tubelet_size


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (the official non-fused RMSNorm)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Self-attention with RMS-normalised q and k (over all heads at once, as officially)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.q_norm = RMSNorm(dim)
        self.k_norm = RMSNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, approximate: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: InternVideo2Config):
        super().__init__()
        self.norm1 = RMSNorm(cfg.width)
        self.attn = Attention(cfg.width, cfg.heads)
        self.ls1 = LayerScale(cfg.width)
        self.norm2 = RMSNorm(cfg.width)
        self.mlp = Mlp(cfg.width, cfg.mlp_hidden, cfg.mlp_gelu_approximate)
        self.ls2 = LayerScale(cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: InternVideo2Config):
        super().__init__()
        k = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.width, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # [B, D, T, g, g]
        return x.flatten(3).permute(0, 2, 3, 1)  # [B, T, g*g, D]: frame-major tokens


class CrossAttention(nn.Module):
    """The attention pooling's attention: separate q/k/v weights, biases as parameters."""

    def __init__(self, dim: int, heads: int, out_dim: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.k_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor) -> torch.Tensor:
        b, nq, d = xq.shape
        h = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, t.shape[1], h, d // h).transpose(1, 2)

        q = split(F.linear(xq, self.q.weight, self.q_bias))
        k = split(F.linear(xk, self.k.weight, self.k_bias))
        v = split(F.linear(xv, self.v.weight, self.v_bias))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, nq, d))


class AttentionPooling(nn.Module):
    """`clip_projector`: one query (the mean token) attends to all tokens -> [B, clip_embed_dim]."""

    def __init__(self, cfg: InternVideo2Config):
        super().__init__()
        self.norm1_q = nn.LayerNorm(cfg.width, eps=1e-5)
        self.norm1_k = nn.LayerNorm(cfg.width, eps=1e-5)
        self.norm1_v = nn.LayerNorm(cfg.width, eps=1e-5)
        self.cross_attn = CrossAttention(cfg.width, cfg.attn_pool_heads, cfg.clip_embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.norm1_q(x.mean(dim=1, keepdim=True))
        return self.cross_attn(q, self.norm1_k(x), self.norm1_v(x)).squeeze(1)


class InternVideo2VisionEncoder(nn.Module):
    """`PretrainInternVideo2` in test mode: [B, 3, T, H, W] -> pooled features [B, clip_embed_dim]."""

    def __init__(self, cfg: InternVideo2Config):
        super().__init__()
        self.config = cfg
        n_img = cfg.grid_size**2
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.temporal_size * n_img + 1, cfg.width))
        if cfg.sep_image_video_pos_embed:
            self.img_pos_embed = nn.Parameter(torch.zeros(1, n_img + 1, cfg.width))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.clip_projector = AttentionPooling(cfg)
        # Activation checkpointing per block (the official config: use_checkpoint, all 40 blocks).
        self.grad_checkpointing = False
        with torch.no_grad():
            self.pos_embed.copy_(sincos_pos_embed_3d(cfg.width, cfg.grid_size, cfg.temporal_size))
            if cfg.sep_image_video_pos_embed:
                self.img_pos_embed.copy_(sincos_pos_embed_3d(cfg.width, cfg.grid_size, 1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x = self.patch_embed(video)
        b, t, n, d = x.shape
        if t == 1 and cfg.sep_image_video_pos_embed:
            pos = self.img_pos_embed
        elif t == 1:
            # Officially: the video table averaged over time for a single image.
            pos = torch.cat([self.pos_embed[:, :1], self.pos_embed[:, 1:].view(1, cfg.temporal_size, n, d).mean(1)], 1)
        elif t == cfg.temporal_size:
            pos = self.pos_embed
        else:
            raise ValueError(f"this InternVideo2 takes {cfg.num_frames} frames, got {t * cfg.tubelet_size}")
        x = torch.cat([self.cls_token.expand(b, 1, d).to(x.dtype), x.reshape(b, t * n, d)], dim=1)
        x = x + pos.to(x.dtype)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled() and x.requires_grad:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.clip_projector(x)


class InternVideo2Retrieval(nn.Module):
    """What `get_vid_feat` and `get_txt_feat` need, under the official top-level names.

    `vision_encoder`, `vision_proj`, `text_encoder` (a transformers `BertModel` with the first
    `fusion_layer` layers and no pooler: the official `text_encoder.bert.*` weights) and
    `text_proj`.
    """

    def __init__(self, cfg: InternVideo2Config = InternVideo2Config()):
        super().__init__()
        from transformers import BertConfig, BertModel

        self.config = cfg
        self.vision_encoder = InternVideo2VisionEncoder(cfg)
        self.vision_proj = nn.Linear(cfg.clip_embed_dim, cfg.embed_dim)
        self.text_encoder = BertModel(bert_config(cfg, BertConfig, text_path_only=True), add_pooling_layer=False)
        self.text_proj = nn.Linear(cfg.text_width, cfg.embed_dim)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the vision blocks' activations in backward (as the official config does)."""
        self.vision_encoder.grad_checkpointing = enable

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised frames [B, T, 3, H, W] -> [B, embed_dim] (not normalised)."""
        return self.vision_proj(self.vision_encoder(frames.permute(0, 2, 1, 3, 4)))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """BERT tokens -> [B, embed_dim] (not normalised): [CLS] after `fusion_layer` layers."""
        out = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)
        return self.text_proj(out.last_hidden_state[:, 0])


def bert_config(cfg: InternVideo2Config, config_cls, text_path_only: bool):
    """A transformers `BertConfig` for the text tower (all 24 layers, or the 19 of the text path)."""
    return config_cls(
        vocab_size=cfg.text_vocab_size,
        hidden_size=cfg.text_width,
        num_hidden_layers=cfg.fusion_layer if text_path_only else cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        intermediate_size=cfg.text_intermediate,
        hidden_act="gelu",
        max_position_embeddings=cfg.text_max_positions,
        type_vocab_size=cfg.text_type_vocab_size,
        layer_norm_eps=cfg.text_layer_norm_eps,
        pad_token_id=0,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )


# ---------------------------------------------------------------- position embeddings


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[M] positions -> [M, dim]: sin of the first half of frequencies, then cos (MAE style)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed_3d(dim: int, grid: int, frames: int) -> torch.Tensor:
    """The official initial `pos_embed` [1, 1 + frames * grid^2, dim] (zeros for the class token).

    A quarter of the channels encodes time, three quarters the 2D position (half of those
    the w coordinate, half the h coordinate), frame-major token order. A checkpoint always
    overwrites it; it only makes a fresh model sensible.
    """
    if dim % 16:
        raise ValueError(f"sin-cos position embedding needs dim % 16 == 0, got {dim}")
    d_t, d_s = dim // 4, dim // 4 * 3
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    spatial = np.concatenate([_sincos_1d(d_s // 2, gw), _sincos_1d(d_s // 2, gh)], axis=1)  # [g*g, d_s]
    temporal = _sincos_1d(d_t, np.arange(frames, dtype=np.float64))  # [T, d_t]
    table = np.concatenate(
        [np.repeat(temporal[:, None, :], grid * grid, axis=1), np.repeat(spatial[None], frames, axis=0)], axis=-1
    ).reshape(frames * grid * grid, dim)
    table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return torch.from_numpy(table).float().unsqueeze(0)


def interpolate_temporal_pos_embed(pos_embed: torch.Tensor, old_frames: int, new_frames: int) -> torch.Tensor:
    """Resize a [1, 1 + T*N, D] joint position table from `old_frames` to `new_frames` in time.

    The official loader (`interpolate_pos_embed_internvideo2`, orig_t_size=4) keeps the class
    token and linearly interpolates every spatial position's sequence of T vectors
    (`F.interpolate(mode="linear")`, align_corners False).
    """
    if old_frames == new_frames:
        return pos_embed
    cls, tokens = pos_embed[:, :1], pos_embed[:, 1:]
    d = tokens.shape[-1]
    if tokens.shape[1] % old_frames:
        raise ValueError(f"position table of {tokens.shape[1]} tokens does not split into {old_frames} frames")
    tokens = tokens.reshape(1, old_frames, -1, d).permute(0, 2, 3, 1).reshape(-1, d, old_frames)
    tokens = F.interpolate(tokens.float(), size=new_frames, mode="linear").to(pos_embed.dtype)
    tokens = tokens.reshape(1, -1, d, new_frames).permute(0, 3, 1, 2).reshape(1, -1, d)
    return torch.cat([cls, tokens], dim=1)


__all__ = [
    "InternVideo2Config",
    "InternVideo2Retrieval",
    "InternVideo2VisionEncoder",
    "UNUSED_VISION_KEYS",
    "bert_config",
    "interpolate_temporal_pos_embed",
    "sincos_pos_embed_3d",
]
