"""The tiny world's models, built from the field's libraries in tiny configs.

* VAE: diffusers `AutoencoderKL` (32x32 RGB -> 4 x 8 x 8 latents).
* Text encoder: transformers `CLIPTextModel` + `CLIPTokenizer` over the world's words.
* Teacher: diffusers `UNet3DConditionModel` (the ModelScope architecture), eps-prediction.
* Rewards (mirroring the paper's): an image-text model (open_clip `CLIP`, HPSv2.1's role),
  a ViCLIP-like video-text model (joint space-time ViT + CLIP text tower, 8 frames) and an
  InternVideo2-like one (conv stem + attention pooling over 4 frames, BERT text tower).
* Evaluators for the tiny benchmark (separate weights): a frame probe (objects, colours,
  positions, scene, style), a clip probe (action, camera motion), a quality net (aesthetic,
  imaging) and an evaluation video-text model (overall consistency, as VBench reuses ViCLIP).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.tinyworld.world import ACTIONS, CAMERAS, COLORS, FRAMES, SCENES, SHAPES, SIZE, STYLES, vocabulary
from t2v_turbo_core.rewards import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize,
)
from t2v_turbo_core.reward_models import hps_preprocess, video_reward_preprocess

TEXT_CONTEXT = 32


def video_reward_input(clips: torch.Tensor) -> torch.Tensor:
    """[B, F, 3, H, W] in [0, 1] -> the video rewards' input: T2V-Turbo's ViCLIP / InternVideo2
    transform, the one the real models run (shortest side to the input size, centre crop,
    ImageNet statistics; t2v_turbo_core.reward_models.video_reward_preprocess)."""
    b, f = clips.shape[:2]
    return video_reward_preprocess(clips.flatten(0, 1), SIZE).reshape(b, f, 3, SIZE, SIZE)
BERT_CONTEXT = 40  # InternVideo2's text length in T2V-Turbo's reward code
EMBED_DIM = 64


# --- tokenizers -------------------------------------------------------------------------


def _byte_alphabet() -> list[str]:
    """GPT-2 / CLIP byte-to-unicode table: every byte gets a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return [chr(c) for c in cs]


def build_tokenizers(out_dir: str | Path) -> None:
    """Train the world's tokenizers with `tokenizers` and save them in transformers' formats.

    CLIP: byte-level BPE whose merges make every world word a single token, laid out like
    OpenAI CLIP's vocabulary (256 bytes, 256 end-of-word bytes, merges, then the two
    specials, so that end-of-text has the highest id as CLIP's argmax pooling expects).
    BERT: a WordPiece vocabulary of the world's words plus single characters for fallback.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BertTokenizer, CLIPTokenizer

    out = Path(out_dir)
    words = vocabulary() + [","]
    alphabet = _byte_alphabet()
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=5000, min_frequency=1, initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False
    )
    bpe.train_from_iterator(words, trainer)
    scratch = out / "_bpe"
    scratch.mkdir(parents=True, exist_ok=True)
    bpe.model.save(str(scratch))
    merges = [tuple(m.split()) for m in (scratch / "merges.txt").read_text().strip().split("\n")[1:]]
    for f in scratch.iterdir():
        f.unlink()
    scratch.rmdir()
    tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    clip_tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=TEXT_CONTEXT)
    clip_tok.save_pretrained(str(out / "clip_tokenizer"))

    bert_dir = out / "bert_tokenizer"
    bert_dir.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = specials + words + chars + [f"##{c}" for c in chars]
    (bert_dir / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    BertTokenizer(str(bert_dir / "vocab.txt"), do_lower_case=True, model_max_length=BERT_CONTEXT).save_pretrained(str(bert_dir))


def load_clip_tokenizer(zoo_dir: str | Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(Path(zoo_dir) / "clip_tokenizer"))


def load_bert_tokenizer(zoo_dir: str | Path):
    from transformers import BertTokenizer

    return BertTokenizer.from_pretrained(str(Path(zoo_dir) / "bert_tokenizer"))


# --- the text-to-video teacher ----------------------------------------------------------


def vae_config() -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=SIZE,
    )


def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(**vae_config())


def text_encoder_config(vocab_size: int, pad_token_id: int, bos_token_id: int, eos_token_id: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TEXT_CONTEXT,
        projection_dim=64,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
    )


def make_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(**text_encoder_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id))
    )


def teacher_unet_config(cross_attention_at_8x8: bool = True) -> dict:
    """The shipped teacher's UNet3D config; `cross_attention_at_8x8=False` is the architecture
    of the build's first two phases, before the graft (see `graft_cross_attention_8x8`)."""
    # Attention at the 4x4 level (and the 2x2 mid block) from the start: most of a UNet3D's
    # CPU cost is attention and feed-forwards at full latent resolution. The graft adds it at
    # 8x8 too, because a small object is a single latent cell at 4x4: text that only enters
    # there can place and colour an object but barely shape it.
    down = ("CrossAttnDownBlock3D" if cross_attention_at_8x8 else "DownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D")
    up = ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D" if cross_attention_at_8x8 else "UpBlock3D")
    return dict(
        sample_size=SIZE // 4,
        in_channels=4,
        out_channels=4,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        cross_attention_dim=64,
        # diffusers' UNet3D reads this as the number of heads (64 channels -> 4 heads of 16;
        # 32 channels -> 4 heads of 8 at 8x8).
        attention_head_dim=4,
        norm_num_groups=16,
    )


def make_teacher_unet(cross_attention_at_8x8: bool = True, position_bias: bool = True):
    """The teacher's UNet3D; `position_bias=False` is the architecture before the layout
    phase (phase 5; see `add_spatial_position_bias`)."""
    from diffusers import UNet3DConditionModel

    unet = UNet3DConditionModel(**teacher_unet_config(cross_attention_at_8x8))
    return add_spatial_position_bias(unet) if position_bias else unet


# The 8x8 blocks that the graft turns into cross-attention blocks (same resnets, same names).
GRAFTED_BLOCKS = ("down_blocks.0.", "up_blocks.2.")


@torch.no_grad()
def graft_cross_attention_8x8(base) -> nn.Module:
    """The teacher with (spatial + temporal) transformer blocks added at the 8x8 level, every
    existing weight kept and the new blocks' output projections zeroed: their residual
    branches add exactly nothing, so the grown UNet computes the base UNet's function and
    training starts from the teacher, not from a perturbed copy of it."""
    unet = make_teacher_unet(cross_attention_at_8x8=True, position_bias=False)
    missing, unexpected = unet.load_state_dict(base.state_dict(), strict=False)
    if unexpected or not all(k.startswith(GRAFTED_BLOCKS) and ("attentions." in k) for k in missing):
        raise ValueError(f"graft: base UNet does not match the pre-graft config (unexpected {unexpected[:3]}, "
                         f"missing {[k for k in missing if not k.startswith(GRAFTED_BLOCKS)][:3]})")
    for name, module in unet.named_modules():
        if name.startswith(GRAFTED_BLOCKS) and name.endswith("proj_out"):
            module.weight.zero_()
            module.bias.zero_()
    return unet


class SpatialPositionBias(nn.Module):
    """A learned vector per latent position, used as a diffusers `BasicTransformerBlock`'s
    `pos_embed`: the block adds it to its normed input before self- and before cross-attention.
    Zero at initialisation, so adding it changes nothing until it is trained."""

    def __init__(self, positions: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, positions, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight.to(x.dtype)


def spatial_transformer_resolutions(unet) -> list[tuple[nn.Module, int]]:
    """Every spatial transformer (Transformer2DModel) of a UNet3D with its side length in
    latent cells: down block i works at sample_size / 2^i, the mid block at the lowest level,
    up block i at the mirror level of down block n-1-i. Temporal transformers are left out."""
    n = len(unet.down_blocks)
    side = unet.config.sample_size
    levels = [(b, side >> i) for i, b in enumerate(unet.down_blocks)]
    levels += [(unet.mid_block, side >> (n - 1))]
    levels += [(b, side >> (n - 1 - i)) for i, b in enumerate(unet.up_blocks)]
    return [(t, s) for b, s in levels for t in getattr(b, "attentions", None) or []]


def add_spatial_position_bias(unet):
    """Give every spatial transformer block of `unet` a zero-initialised `SpatialPositionBias`
    (in place; returns `unet`). diffusers' UNet3D has no spatial position signal but the
    convolutions' zero padding, and its attention is blind to where a cell is; binding "the
    red circle" to the left of the frame needs queries that know their position."""
    for transformer, side in spatial_transformer_resolutions(unet):
        for block in transformer.transformer_blocks:
            if block.pos_embed is not None:
                raise ValueError("add_spatial_position_bias: the UNet already has spatial position embeddings")
            ref = block.norm1.weight
            block.pos_embed = SpatialPositionBias(side * side, block.norm1.normalized_shape[0]).to(ref.device, ref.dtype)
    return unet


# --- reward models and the evaluation video-text model ----------------------------------


class TinyImageTextReward(nn.Module):
    """HPSv2.1's role: an open_clip CLIP scoring frames against prompts (cosine)."""

    def __init__(self, tokenizer, vocab_size: int):
        super().__init__()
        from open_clip.model import CLIP

        self.tokenizer = tokenizer
        self.clip = CLIP(
            embed_dim=EMBED_DIM,
            vision_cfg=dict(layers=3, width=96, head_width=32, patch_size=4, image_size=SIZE),
            text_cfg=dict(
                context_length=TEXT_CONTEXT, vocab_size=vocab_size, width=64, heads=4, layers=2,
                pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id,
            ),
        )

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(prompts), padding="max_length", max_length=TEXT_CONTEXT, truncation=True, return_tensors="pt").input_ids

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        # HPSv2's evaluation transform (the real model's): longest side to the input size, pad square, CLIP stats.
        x = hps_preprocess(images, SIZE)
        return F.normalize(self.clip.encode_image(x), dim=-1)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        device = next(self.parameters()).device
        return F.normalize(self.clip.encode_text(self.tokenize(prompts).to(device)), dim=-1)

    def forward(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            text = self.encode_text(prompts)
        return (self.encode_images(images) * text).sum(-1)


class _JointSpaceTimeViT(nn.Module):
    """ViCLIP's video tower in miniature: patch tokens of all frames attend jointly."""

    def __init__(self, frames: int, width: int = 64, layers: int = 2, heads: int = 4, patch: int = 8):
        super().__init__()
        # 8-pixel patches: 16 per frame, 128 space-time tokens for 8 frames (joint attention
        # over 512 tokens of 4-pixel patches cost 4x more for no gain in retrieval).
        n = (SIZE // patch) ** 2
        self.patch = nn.Conv2d(3, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, n, width) * 0.02)
        self.time = nn.Parameter(torch.randn(1, frames, 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(width)
        self.proj = nn.Linear(width, EMBED_DIM, bias=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, f = clips.shape[:2]
        tokens = self.patch(clips.flatten(0, 1)).flatten(2).transpose(1, 2)  # [B*F, N, W]
        tokens = tokens.reshape(b, f, *tokens.shape[1:]) + self.pos[:, None] + self.time[:, :f]
        tokens = torch.cat([self.cls.expand(b, 1, -1), tokens.flatten(1, 2)], dim=1)
        return self.proj(self.ln(self.blocks(tokens)[:, 0]))


class TinyViCLIP(nn.Module):
    """The ViCLIP role: joint space-time ViT over 8 frames + CLIP text tower (context 32)."""

    def __init__(self, tokenizer, vocab_size: int, num_frames: int = FRAMES):
        super().__init__()
        from open_clip.transformer import TextTransformer

        self.num_frames = num_frames
        self.tokenizer = tokenizer
        self.video = _JointSpaceTimeViT(num_frames)
        self.text = TextTransformer(
            context_length=TEXT_CONTEXT, vocab_size=vocab_size, width=64, heads=4, layers=2, output_dim=EMBED_DIM,
            pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id,
        )
        self.logit_scale = nn.Parameter(torch.tensor(2.659))

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video(video_reward_input(clips)), dim=-1)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        device = next(self.parameters()).device
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=TEXT_CONTEXT, truncation=True, return_tensors="pt").input_ids
        return F.normalize(self.text(ids.to(device)), dim=-1)

    def forward(self, videos: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            text = self.encode_text(prompts)
        return (self.encode_video(videos) * text).sum(-1)


class _AttentionPoolVideo(nn.Module):
    """InternVideo2's shape in miniature: conv stem, space-time blocks, attention pooling."""

    def __init__(self, frames: int, width: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        # Patch embedding like InternVideo2's ViT (8-pixel patches at this size); a stack of
        # strided convolutions to the same 4x4 grid lost too much to learn captions (retrieval
        # stayed near chance).
        self.stem = nn.Conv2d(3, width, 8, stride=8)
        n = (SIZE // 8) ** 2
        self.pos = nn.Parameter(torch.randn(1, 1, n, width) * 0.02)
        self.time = nn.Parameter(torch.randn(1, frames, 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pool = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln = nn.LayerNorm(width)
        self.proj = nn.Linear(width, EMBED_DIM, bias=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, f = clips.shape[:2]
        tokens = self.stem(clips.flatten(0, 1)).flatten(2).transpose(1, 2)
        tokens = tokens.reshape(b, f, *tokens.shape[1:]) + self.pos + self.time[:, :f]
        tokens = self.blocks(tokens.flatten(1, 2))
        pooled, _ = self.pool(self.query.expand(b, -1, -1), tokens, tokens)
        return self.proj(self.ln(pooled[:, 0]))


class TinyInternVid2(nn.Module):
    """The InternVideo2 role: attention-pooled video tower over 4 frames + BERT text tower."""

    def __init__(self, bert_tokenizer, num_frames: int = 4):
        super().__init__()
        from transformers import BertConfig, BertModel

        self.num_frames = num_frames
        self.tokenizer = bert_tokenizer
        self.video = _AttentionPoolVideo(num_frames)
        self.text = BertModel(
            BertConfig(
                vocab_size=len(bert_tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=128, max_position_embeddings=BERT_CONTEXT, pad_token_id=bert_tokenizer.pad_token_id,
            ),
            add_pooling_layer=False,
        )
        self.text_proj = nn.Linear(64, EMBED_DIM)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video(video_reward_input(clips)), dim=-1)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        device = next(self.parameters()).device
        tok = self.tokenizer(list(prompts), padding="max_length", max_length=BERT_CONTEXT, truncation=True, return_tensors="pt")
        # Mean over tokens (InternVideo2 reads [CLS]); trained from scratch at this size, [CLS]
        # pooling stalled near chance while the mean learned (loss 2.9 vs 2.1 after 400 steps).
        mask = tok.attention_mask.to(device)
        out = self.text(input_ids=tok.input_ids.to(device), attention_mask=mask).last_hidden_state
        pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(self.text_proj(pooled), dim=-1)

    def forward(self, videos: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            text = self.encode_text(prompts)
        return (self.encode_video(videos) * text).sum(-1)


# --- evaluators -------------------------------------------------------------------------


def _conv(cin: int, cout: int, stride: int = 1, norm: str = "group") -> nn.Module:
    layer = nn.BatchNorm2d(cout) if norm == "batch" else nn.GroupNorm(8, cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), layer, nn.GELU())


class FrameProbe(nn.Module):
    """Per-frame detector of the world: which shapes are present, their colours and
    positions, the scene and the appearance style. Its object features play DINO's role in
    subject consistency and its scene features CLIP's role in background consistency.

    Detection-style heads: every cell of an 8x8 feature map scores every shape; a shape's
    presence is a soft maximum over cells, and its position and colour are read where its
    evidence is (soft-argmax). The same recogniser serves every position, which a head on
    flattened features would have to learn cell by cell.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        # BatchNorm: rotated-shape recognition trained ~3x faster than with GroupNorm here
        # (84% vs 30% shape accuracy after 400 steps in a side-by-side check).
        self.stem = nn.Sequential(*(_conv(a, b, st, norm="batch") for a, b, st in
                                    ((3, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1), (4 * w, 4 * w, 1))))
        self.where = nn.Conv2d(4 * w, len(SHAPES), 1)
        self.color_map = nn.Conv2d(4 * w, len(COLORS), 1)
        self.obj = nn.Sequential(nn.Linear(4 * w, 128), nn.GELU())
        self.scene_branch = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * w, 64), nn.GELU())
        self.scene = nn.Linear(64, len(SCENES))
        self.style = nn.Linear(8 * w + 64, len(STYLES))
        cells = (torch.arange(SIZE // 4, dtype=torch.float32) + 0.5) / (SIZE // 4) * 2 - 1
        gy, gx = torch.meshgrid(cells, cells, indexing="ij")
        self.register_buffer("grid", torch.stack([gx.flatten(), gy.flatten()], -1), persistent=False)  # [64, 2] (x, y)

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.stem(normalize(frames, IMAGENET_MEAN, IMAGENET_STD))  # [N, C, 8, 8]
        n = h.shape[0]
        where = self.where(h).flatten(2)  # [N, shapes, cells]
        attn = torch.softmax(where, dim=-1)
        feats = h.flatten(2)  # [N, C, cells]
        any_obj = torch.softmax(where.amax(1), dim=-1)  # where the most shape-like evidence is
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], -1)
        s = self.scene_branch(h)
        return {
            "presence": torch.logsumexp(where, dim=-1) - torch.log(torch.tensor(float(where.shape[-1]))),
            "color": attn @ self.color_map(h).flatten(2).transpose(1, 2),  # [N, shapes, colours]
            "position": attn @ self.grid,  # [N, shapes, 2] in screen units
            "scene": self.scene(s),
            "style": self.style(torch.cat([pooled, s], -1)),
            "object_features": self.obj((feats * any_obj[:, None]).sum(-1)),
            "scene_features": s,
        }


class ClipProbe(nn.Module):
    """Per-clip classifier of the subject's action and the camera motion (3D convolutions)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.GELU())

        self.net = nn.Sequential(
            block(6, w, (1, 2, 2)), block(w, 2 * w, (1, 2, 2)), block(2 * w, 2 * w, (2, 1, 1)),
            block(2 * w, 4 * w, (2, 2, 2)), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
        )
        self.action = nn.Linear(4 * w, len(ACTIONS))
        self.camera = nn.Linear(4 * w, len(CAMERAS))

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        x = clips.transpose(1, 2)  # [B, 3, F, H, W]
        diff = torch.cat([x[:, :, 1:] - x[:, :, :-1], torch.zeros_like(x[:, :, :1])], dim=2)
        h = self.net(torch.cat([x - 0.5, diff * 4], dim=1))
        return {"action": self.action(h), "camera": self.camera(h)}


class QualityNet(nn.Module):
    """Per-frame aesthetic and imaging quality in [0, 1] (LAION aesthetic / MUSIQ's roles)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            _conv(3, w), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w), _conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 64), nn.GELU(), nn.Linear(64, 2),
        )

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        out = torch.sigmoid(self.net(frames - 0.5))
        return {"aesthetic": out[:, 0], "imaging": out[:, 1]}


# --- zoo files ----------------------------------------------------------------------------


def save_module(module: nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    """safetensors, written atomically (temp name, then rename)."""
    from safetensors.torch import save_file

    from t2v_turbo_core.safe_io import atomic_write

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={k: json.dumps(v) for k, v in (metadata or {}).items()}))


def load_module(module: nn.Module, path: str | Path) -> nn.Module:
    from t2v_turbo_core.safe_io import WeightsFileError, load_safetensors

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tiny-world zoo file not found: {path} (rebuild with `bench zoo build`)")
    try:
        state = load_safetensors(path)
        module.load_state_dict(state, strict=True)
    except WeightsFileError as err:
        raise WeightsFileError(f"{err} (rebuild the zoo with `bench zoo build`)") from None
    except RuntimeError as err:  # load_state_dict: keys or shapes of another model
        raise WeightsFileError(f"{path}: does not fit the tiny-world model it is loaded into ({str(err)[:300]})") from None
    return module.eval().requires_grad_(False)
