"""VideoCrafter2's denoiser: the LVDM 3D UNet, with T2V-Turbo's guidance-scale projection.

Written from the structure of `lvdm/modules/networks/openaimodel3d.py` and
`lvdm/modules/attention.py` (AILab-CVC/VideoCrafter; the copy in Ji4chenLi/t2v-turbo) so
that the `model.diffusion_model.*` weights of VideoCrafter2's `model.ckpt` load strictly:
every module keeps the official name, including the ResBlocks' misspelt `temopral_conv`.

Layout (config `configs/inference_t2v_512_v2.0.yaml`, `unet_config.params`):
* the SD 2.x image UNet (model_channels 320, channel_mult 1-2-4-4, 2 ResBlocks per level,
  attention at downsampling 1, 2 and 4, 64 channels per head, linear proj_in/proj_out,
  cross-attention to 1024-d OpenCLIP-H tokens), run frame by frame on `[(B F), C, h, w]`;
* after every ResBlock a temporal conv block (`temopral_conv`: four (3, 1, 1) Conv3d);
* after every spatial transformer a temporal transformer: self-attention along frames only
  (`temporal_selfatt_only: true`: both attn1 and attn2 attend to the frames themselves),
  no relative positions, no causal mask;
* `init_attn`: one more temporal transformer right after the input conv (8 heads of 64,
  1x1 Conv1d projections: LVDM builds it without `use_linear`);
* fps conditioning (`fps_cond: true`): a sinusoidal fps embedding through its own MLP, added
  to the timestep embedding.

T2V-Turbo adds a bias-free linear projection of the 256-d guidance-scale embedding that is
added to the sinusoidal timestep embedding before `time_embed` (its `time_cond_proj`, the
same place as diffusers' `TimestepEmbedding.cond_proj`). Here it is a module named
`cond_proj` so that `t2v_turbo_core.lora` recognises it as the w projection; it exists only
when `time_cond_proj_dim` is set, so a teacher has exactly the checkpoint's keys.

Weights always come from a checkpoint: unlike LVDM, no layer is zero-initialised here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class VideoCrafter2UNetConfig:
    """Hyper-parameters of the LVDM UNet; defaults are VideoCrafter2's.

    Source: `configs/inference_t2v_512_v2.0.yaml` of VideoCrafter2 / t2v-turbo,
    `model.params.unet_config.params`, plus openaimodel3d.py's own defaults for what the yaml
    leaves out (dropout 0, dims 2, conv_resample, no scale-shift norm, no resblock up/down,
    the temporal conv block's dropout 0.1, the init_attn's 8 heads).
    """

    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_head_channels: int = 64
    transformer_depth: int = 1
    temporal_transformer_depth: int = 1
    context_dim: int = 1024
    fps_cond: bool = True
    addition_attention: bool = True
    init_attn_heads: int = 8
    # LVDM's GroupNorms all have 32 groups; configurable only so tests can shrink channels.
    norm_num_groups: int = 32
    dropout: float = 0.0
    temporal_conv_dropout: float = 0.1
    time_cond_proj_dim: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "VideoCrafter2UNetConfig":
        return dataclasses.replace(self, **changes)

    # Settings of openaimodel3d.UNetModel this implementation supports, with the only value
    # it supports (VideoCrafter2's). Anything else is refused rather than silently ignored.
    _FIXED = {
        "use_linear": True,
        "temporal_conv": True,
        "temporal_attention": True,
        "temporal_selfatt_only": True,
        "use_relative_position": False,
        "use_causal_attention": False,
        "tempspatial_aware": False,
        "use_scale_shift_norm": False,
        "resblock_updown": False,
        "conv_resample": True,
        "dims": 2,
        "use_image_attention": False,
        "num_heads": -1,
    }
    _IGNORED = ("use_checkpoint", "temporal_length", "use_fp16", "record_attn_probs", "motion_cond_proj_dim")

    @classmethod
    def from_lvdm_params(cls, params: Mapping[str, Any]) -> "VideoCrafter2UNetConfig":
        """Build from an LVDM yaml's `unet_config.params` mapping, refusing unsupported settings.

        `use_checkpoint` (gradient checkpointing), `temporal_length` (only used by relative
        positions / causal masks, both off) and `use_fp16` are runtime choices, not weights.
        """
        params = dict(params)
        errors = []
        for key, value in cls._FIXED.items():
            if key in params and params.pop(key) != value:
                errors.append(f"{key} (only {value!r} is supported)")
        for key in cls._IGNORED:
            params.pop(key, None)
        if params.get("motion_cond_proj_dim") is not None:
            errors.append("motion_cond_proj_dim (T2V-Turbo-v2 motion conditioning is not supported)")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - fields)
        if unknown:
            errors.append(f"unknown settings {unknown}")
        if errors:
            raise ValueError("unsupported VideoCrafter2 UNet config: " + "; ".join(errors))
        for key in ("channel_mult", "attention_resolutions"):
            if key in params:
                params[key] = tuple(int(v) for v in params[key])
        return cls(**params)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """LVDM's sinusoidal embedding: [cos | sin], frequencies exp(-ln(max_period) * i / half).

    (Not diffusers' default order: LVDM puts the cosines first and divides by `half`.)
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """LVDM's `normalization()`: a GroupNorm whose output keeps the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).type(x.dtype)


class Attention(nn.Module):
    """Multi-head attention with LVDM's names: to_q/to_k/to_v (no bias), to_out.0."""

    def __init__(self, query_dim: int, context_dim: int | None, heads: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.dim_head = dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], self.heads, self.dim_head).transpose(1, 2)

        # Softmax scale 1/sqrt(dim_head), as LVDM's CrossAttention.
        out = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(self.to_k(context)), heads(self.to_v(context)))
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, 4x inner width (LVDM's FeedForward with glu=True): net.0.proj, net.2."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """attn1 (self) -> attn2 (cross to `context_dim`, or self when None) -> GEGLU FF; pre-LN."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None, dropout: float = 0.0):
        super().__init__()
        self.attn1 = Attention(dim, None, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = Attention(dim, context_dim, heads, dim_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the h*w tokens, cross-attending to the text (use_linear)."""

    def __init__(self, channels: int, heads: int, dim_head: int, depth: int, context_dim: int, groups: int):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [TransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)]
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        bf, c, h, w = x.shape
        y = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c))
        for block in self.transformer_blocks:
            y = block(y, context)
        y = self.proj_out(y).reshape(bf, h, w, c).permute(0, 3, 1, 2)
        return y + x


class TemporalTransformer(nn.Module):
    """Self-attention along frames at every spatial position; input/output [B, C, F, h, w].

    `use_linear=False` (only the `init_attn`) projects with kernel-1 Conv1d layers, as LVDM.
    """

    def __init__(self, channels: int, heads: int, dim_head: int, depth: int, groups: int, use_linear: bool = True):
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        if use_linear:
            self.proj_in = nn.Linear(channels, inner)
            self.proj_out = nn.Linear(inner, channels)
        else:
            self.proj_in = nn.Conv1d(channels, inner, kernel_size=1)
            self.proj_out = nn.Conv1d(inner, channels, kernel_size=1)
        # temporal_selfatt_only: no context, so attn2 is a second self-attention.
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, dim_head, None) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        y = self.norm(x).permute(0, 3, 4, 1, 2).reshape(b * h * w, c, f)  # (b h w), c, f
        if self.use_linear:
            y = self.proj_in(y.transpose(1, 2))
        else:
            y = self.proj_in(y).transpose(1, 2)
        for block in self.transformer_blocks:
            y = block(y)
        if self.use_linear:
            y = self.proj_out(y).reshape(b, h, w, f, c).permute(0, 4, 3, 1, 2)
        else:
            y = self.proj_out(y.transpose(1, 2)).reshape(b, h, w, c, f).permute(0, 3, 4, 1, 2)
        return y + x


class TemporalConvBlock(nn.Module):
    """Four (3, 1, 1) convolutions along frames with a residual (ModelScope's temporal conv)."""

    def __init__(self, channels: int, dropout: float, groups: int):
        super().__init__()
        kernel, padding = (3, 1, 1), (1, 0, 0)
        self.conv1 = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv3d(channels, channels, kernel, padding=padding))
        for name in ("conv2", "conv3", "conv4"):
            setattr(
                self,
                name,
                nn.Sequential(
                    nn.GroupNorm(groups, channels), nn.SiLU(), nn.Dropout(dropout), nn.Conv3d(channels, channels, kernel, padding=padding)
                ),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """LVDM ResBlock (no scale-shift norm) followed by the temporal conv block."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None, config: VideoCrafter2UNetConfig):
        super().__init__()
        out = out_channels or channels
        g = config.norm_num_groups
        self.in_layers = nn.Sequential(GroupNorm32(g, channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out))
        self.out_layers = nn.Sequential(
            GroupNorm32(g, out), nn.SiLU(), nn.Dropout(config.dropout), nn.Conv2d(out, out, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)
        self.temopral_conv = TemporalConvBlock(out, config.temporal_conv_dropout, g)  # sic: the checkpoint's name

    def forward(self, x: torch.Tensor, emb: torch.Tensor, batch_size: int) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        bf, c, hh, ww = h.shape
        h = h.reshape(batch_size, bf // batch_size, c, hh, ww).transpose(1, 2)
        h = self.temopral_conv(h)
        return h.transpose(1, 2).reshape(bf, c, hh, ww)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Stage(nn.Sequential):
    """LVDM's TimestepEmbedSequential: routes the embedding, the text and the frame layout."""

    gradient_checkpointing = False

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, batch_size: int) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, ResBlock):
                x = self._run(layer, x, emb, batch_size)
            elif isinstance(layer, SpatialTransformer):
                x = self._run(layer, x, context)
            elif isinstance(layer, TemporalTransformer):
                bf, c, h, w = x.shape
                y = x.reshape(batch_size, bf // batch_size, c, h, w).transpose(1, 2)
                y = self._run(layer, y)
                x = y.transpose(1, 2).reshape(bf, c, h, w)
            else:
                x = layer(x)
        return x

    def _run(self, layer: nn.Module, *args: Any) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)


class VideoCrafter2UNet(nn.Module):
    """eps-prediction video UNet: forward(x [B, C, F, h, w], t [B], encoder_hidden_states [B, L, D])."""

    _supports_gradient_checkpointing = True

    def __init__(self, config: VideoCrafter2UNetConfig = VideoCrafter2UNetConfig()):
        super().__init__()
        self.config = config
        c = config
        mc, emb_dim, g = c.model_channels, c.model_channels * 4, c.norm_num_groups

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if c.fps_cond:
            self.fps_embedding = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.cond_proj = nn.Linear(c.time_cond_proj_dim, mc, bias=False) if c.time_cond_proj_dim else None

        def attention(ch: int) -> list[nn.Module]:
            heads = ch // c.num_head_channels
            return [
                SpatialTransformer(ch, heads, c.num_head_channels, c.transformer_depth, c.context_dim, g),
                TemporalTransformer(ch, heads, c.num_head_channels, c.temporal_transformer_depth, g),
            ]

        self.input_blocks = nn.ModuleList([Stage(nn.Conv2d(c.in_channels, mc, 3, padding=1))])
        if c.addition_attention:
            self.init_attn = Stage(
                TemporalTransformer(mc, c.init_attn_heads, c.num_head_channels, c.transformer_depth, g, use_linear=False)
            )
        skip_channels, ch, ds = [mc], mc, 1
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * mc, c)]
                ch = mult * mc
                if ds in c.attention_resolutions:
                    layers += attention(ch)
                self.input_blocks.append(Stage(*layers))
                skip_channels.append(ch)
            if level != len(c.channel_mult) - 1:
                self.input_blocks.append(Stage(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2

        # The middle block always has attention, whatever attention_resolutions says.
        self.middle_block = Stage(ResBlock(ch, emb_dim, None, c), *attention(ch), ResBlock(ch, emb_dim, None, c))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, mc * mult, c)]
                ch = mc * mult
                if ds in c.attention_resolutions:
                    layers += attention(ch)
                if level and i == c.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Stage(*layers))

        self.out = nn.Sequential(GroupNorm32(g, ch), nn.SiLU(), nn.Conv2d(mc, c.out_channels, 3, padding=1))

    @property
    def dtype(self) -> torch.dtype:
        return self.time_embed[0].weight.dtype

    def enable_gradient_checkpointing(self) -> None:
        for module in self.modules():
            if isinstance(module, Stage):
                module.gradient_checkpointing = True

    def disable_gradient_checkpointing(self) -> None:
        for module in self.modules():
            if isinstance(module, Stage):
                module.gradient_checkpointing = False

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep_cond: torch.Tensor | None = None,
        fps: int | float | torch.Tensor = 16,
    ) -> torch.Tensor:
        """eps for latents `sample` [B, C, F, h, w] at integer timesteps [B] (or a scalar).

        `timestep_cond` [B, time_cond_proj_dim]: the guidance-scale embedding (students only).
        `fps`: frame-rate conditioning (VideoCrafter2 and T2V-Turbo use 16).
        """
        b, _, f, h, w = sample.shape
        dtype, device = self.dtype, sample.device
        t = torch.as_tensor(timestep, device=device)
        if t.ndim == 0:
            t = t.expand(b)
        t_emb = timestep_embedding(t, self.config.model_channels).to(dtype)
        if timestep_cond is not None:
            if self.cond_proj is None:
                raise ValueError("timestep_cond given to a UNet without a w projection (build the student with make_student)")
            t_emb = t_emb + self.cond_proj(timestep_cond.to(dtype))
        emb = self.time_embed(t_emb)
        if self.config.fps_cond:
            fps_t = torch.as_tensor(fps, device=device)
            if fps_t.ndim == 0:
                fps_t = fps_t.expand(b)
            emb = emb + self.fps_embedding(timestep_embedding(fps_t, self.config.model_channels).to(dtype))

        # Frames are folded into the batch, (b f) with b outermost; text and embedding follow.
        context = encoder_hidden_states.to(dtype).repeat_interleave(f, dim=0)
        emb = emb.repeat_interleave(f, dim=0)
        x = sample.transpose(1, 2).reshape(b * f, -1, h, w).to(dtype)

        skips = []
        for i, block in enumerate(self.input_blocks):
            x = block(x, emb, context, b)
            if i == 0 and self.config.addition_attention:
                x = self.init_attn(x, emb, context, b)
            skips.append(x)
        x = self.middle_block(x, emb, context, b)
        for block in self.output_blocks:
            x = block(torch.cat([x, skips.pop()], dim=1), emb, context, b)
        y = self.out(x)
        return y.reshape(b, f, -1, h, w).transpose(1, 2).to(sample.dtype)
