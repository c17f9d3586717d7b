"""The real reward models of T2V-Turbo behind the `ImageTextReward` / `VideoTextReward` protocols.

* image-text: HPSv2.1 (open_clip ViT-H-14) and PickScore (transformers CLIP-H);
* video-text: ViCLIP-L (8 frames) and InternVideo2 Stage-2 1B (4 frames as trained, or 8 as
  in T2V-Turbo v1's code).

Every wrapper is a frozen `nn.Module` in eval mode, differentiable with respect to the input
pixels (the preprocessing is torch), and scores a sample by the cosine similarity of the
L2-normalised image/video and text features, with no logit scale: that is the reward of
T2V-Turbo's `reward_fn.py` and the published HPSv2 score. Text features are computed under
`no_grad` (the prompt is a constant of the reward).

Loaders build each architecture from its config (nothing is downloaded, ever) and load a
local checkpoint strictly; a missing file raises `FileNotFoundError` naming the file and
where it was looked for. Pickle checkpoints are read with `torch.load(weights_only=True)`;
a file that needs arbitrary unpickling is refused unless the caller passes
`allow_pickle=True` for a file they trust.
"""

from __future__ import annotations

import abc
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from t2v_turbo_core.arch.internvideo2 import (
    UNUSED_VISION_KEYS,
    InternVideo2Config,
    InternVideo2Retrieval,
    interpolate_temporal_pos_embed,
)
from t2v_turbo_core.arch.viclip import ViCLIP, ViCLIPConfig
from t2v_turbo_core.rewards import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    normalize,
    resize_longest_side_and_pad,
)

logger = logging.getLogger(__name__)

REWARD_INPUT_SIZE = 224  # every reward model here takes 224 x 224 inputs

# ---------------------------------------------------------------------------- preprocessing


def _resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images  # torchvision's resize returns the input unchanged in this case too
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    # antialias=True is torchvision's tensor default (>= 0.17) and the same kernel as PIL's.
    out = F.interpolate(flat, size=size, mode=mode, align_corners=False, antialias=True)
    return out.reshape(*lead, *out.shape[-3:])


def resize_shortest_side(images: torch.Tensor, size: int, rounding: str = "round", mode: str = "bicubic") -> torch.Tensor:
    """Aspect-preserving resize of [..., 3, H, W] so that the shorter side becomes `size`.

    `rounding` says how the longer side is computed, because the references differ:
    "floor" is torchvision's `Resize(size)` (`int(size * long / short)`), also what CLIP's
    image processor does; "round" is T2V-Turbo's `ResizeCropMinSize` for ViCLIP and
    InternVideo2 (`round(dim * size / short)` for both sides).
    """
    h, w = images.shape[-2:]
    if rounding == "floor":
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(size * long / short)
        new = (size, new_long) if h <= w else (new_long, size)
    elif rounding == "round":
        scale = size / min(h, w)
        new = (round(h * scale), round(w * scale))
    else:
        raise ValueError(f"rounding must be 'floor' or 'round', got {rounding!r}")
    return _resize(images, new, mode)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's `CenterCrop(size)` offsets: `int(round((H - size) / 2))` (inputs >= size)."""
    h, w = images.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot centre-crop {size} out of {h}x{w}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return images[..., top : top + size, left : left + size]


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    h, w = images.shape[-2:]
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return images[..., top : top + size, left : left + size]


def hps_preprocess(images: torch.Tensor, size: int = REWARD_INPUT_SIZE) -> torch.Tensor:
    """HPSv2's evaluation transform on [N, 3, H, W] in [0, 1].

    `ResizeMaxSize` (hpsv2/src/open_clip/transform.py): longest side -> 224 (bicubic,
    `round(dim * scale)`), centred zero padding to a square, then OpenAI CLIP mean/std.
    (The reference skips the padding when the longest side is already 224; here a
    non-square input is always padded so that the ViT gets a square.)
    """
    return normalize(resize_longest_side_and_pad(images, size, fill=0.0, mode="bicubic"), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def pickscore_preprocess(images: torch.Tensor, size: int = REWARD_INPUT_SIZE, resize: str = "shortest_side") -> torch.Tensor:
    """PickScore's input on [N, 3, H, W] in [0, 1].

    "shortest_side" (default): CLIP's image processor as published with PickScore
    (`shortest_edge` 224, bicubic, centre crop 224, OpenAI CLIP mean/std), i.e. torchvision's
    `Resize(224)` + `CenterCrop(224)` + `Normalize` on tensors.
    "square": T2V-Turbo's `get_pick_score_fn`, which resizes to exactly 224 x 224 (aspect not
    kept) before the (then no-op) centre crop.
    """
    if resize == "shortest_side":
        images = center_crop(resize_shortest_side(images, size, rounding="floor"), size)
    elif resize == "square":
        images = center_crop(_resize(images, (size, size), "bicubic"), size)
    else:
        raise ValueError(f"resize must be 'shortest_side' or 'square', got {resize!r}")
    return normalize(images, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def video_reward_preprocess(
    frames: torch.Tensor, size: int = REWARD_INPUT_SIZE, random: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ViCLIP / InternVideo2 input in T2V-Turbo on [..., 3, H, W] in [0, 1].

    `ResizeCropMinSize(224)` (reward_fn.py): shortest side -> 224 (bicubic,
    `round(dim * scale)`), a 224 crop (random in T2V-Turbo's training; centred by default
    here so that a score is a deterministic function of the video), ImageNet mean/std.
    The same crop is used for every frame of a batch.
    """
    frames = resize_shortest_side(frames, size, rounding="round")
    frames = random_crop(frames, size, generator) if random else center_crop(frames, size)
    return normalize(frames, IMAGENET_MEAN, IMAGENET_STD)


# ---------------------------------------------------------------------------- shared pieces


def _require_file(path: str | os.PathLike | None, what: str, hint: str) -> Path:
    if path is None or str(path) == "":
        raise FileNotFoundError(f"{what}: no path given ({hint})")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: looked for the file {p.resolve()} ({hint})")
    return p


def _require_dir(path: str | os.PathLike | None, what: str, needs: Sequence[Sequence[str]], hint: str) -> Path:
    """A directory holding, for at least one alternative in `needs`, all of its files."""
    if path is None or str(path) == "":
        raise FileNotFoundError(f"{what}: no directory given ({hint})")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{what} not found: looked for the directory {p.resolve()} ({hint})")
    if not any(all((p / f).is_file() for f in files) for files in needs):
        wanted = " or ".join("+".join(files) for files in needs)
        raise FileNotFoundError(f"{what}: {p.resolve()} has none of {wanted} ({hint})")
    return p


def torch_load_checkpoint(path: Path, allow_pickle: bool = False) -> Any:
    """`torch.load` with `weights_only=True`; only with `allow_pickle` fall back to full unpickling."""
    from t2v_turbo_core.safe_io import WeightsFileError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as err:  # a cut or corrupt file: an error naming it
        raise WeightsFileError(f"{path}: truncated or corrupt torch file ({type(err).__name__}: {err})") from None
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise ValueError(
                f"{path} holds Python objects that torch.load(weights_only=True) refuses ({err}). "
                "If you trust the file, pass allow_pickle=True."
            ) from err
        logger.warning("loading %s with full unpickling (allow_pickle=True)", path)
        return torch.load(path, map_location="cpu", weights_only=False)


def _unwrap_state_dict(ckpt: Any, keys: Sequence[str], path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint (first of `keys` present), minus a DDP prefix."""
    sd = ckpt
    if isinstance(ckpt, Mapping):
        for k in keys:
            if k in ckpt and isinstance(ckpt[k], Mapping):
                sd = ckpt[k]
                break
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        top = list(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"{path}: expected a state dict under one of {list(keys)}, found {top}")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def _load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{what}: checkpoint does not match the architecture: "
            f"missing {result.missing_keys[:8]} ({len(result.missing_keys)}), "
            f"unexpected {result.unexpected_keys[:8]} ({len(result.unexpected_keys)})"
        )


def _frozen(module: nn.Module, device: torch.device | str | None) -> nn.Module:
    if device is not None:
        module.to(device)
    return module.eval().requires_grad_(False)


def _model_dtype_device(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(module.parameters())
    return p.dtype, p.device


def _per_prompt_features(prompts: Sequence[str], encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """L2-normalised text features for each prompt, encoding each distinct prompt once, no grad."""
    unique = list(dict.fromkeys(prompts))
    with torch.no_grad():
        feats = F.normalize(encode(unique).float(), dim=-1)
    index = torch.tensor([unique.index(p) for p in prompts], device=feats.device)
    return feats[index]


def _cosine(features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    return (F.normalize(features.float(), dim=-1) * text_features.to(features.device)).sum(-1)


def _check_batch(x: torch.Tensor, prompts: Sequence[str], ndim: int, what: str) -> None:
    if x.ndim != ndim or x.shape[-3] != 3:
        raise ValueError(f"{what} expects {'[N, 3, H, W]' if ndim == 4 else '[B, n, 3, H, W]'} pixels, got {tuple(x.shape)}")
    if len(prompts) != x.shape[0]:
        raise ValueError(f"{what}: {x.shape[0]} inputs but {len(prompts)} prompts")


# ---------------------------------------------------------------------------- HPSv2.1

HPS_MODEL_NAME = "ViT-H-14"  # HPSv2 fine-tunes open_clip's ViT-H-14 (laion2B-s32B-b79K)


def hps_model_config(model_cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """open_clip's bundled ViT-H-14 config (or `model_cfg`, e.g. a reduced one for tests)."""
    if model_cfg is not None:
        return dict(model_cfg)
    import open_clip

    cfg = open_clip.get_model_config(HPS_MODEL_NAME)
    if cfg is None:
        raise RuntimeError(f"open_clip has no bundled config for {HPS_MODEL_NAME}")
    return cfg


def build_hps_model(model_cfg: Mapping[str, Any] | None = None) -> nn.Module:
    """An open_clip `CLIP` from its config, randomly initialised (GELU, not QuickGELU, as HPSv2)."""
    from open_clip.model import CLIP

    return CLIP(**hps_model_config(model_cfg))


class HPSv21Reward(nn.Module):
    """HPSv2.1: cosine of open_clip ViT-H-14 image and text features (`ImageTextReward`)."""

    def __init__(self, model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], image_size: int = REWARD_INPUT_SIZE):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = image_size
        _frozen(self, None)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        _, device = _model_dtype_device(self.model)
        return self.model.encode_text(self.tokenizer(prompts).to(device))

    def forward(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        _check_batch(images, prompts, 4, "HPSv2.1")
        dtype, device = _model_dtype_device(self.model)
        pixels = hps_preprocess(images.to(device=device, dtype=dtype), self.image_size)
        return _cosine(self.model.encode_image(pixels), _per_prompt_features(prompts, self.encode_text))


def load_hpsv21(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    model_cfg: Mapping[str, Any] | None = None,
    allow_pickle: bool = False,
    gradient_checkpointing: bool = False,
) -> HPSv21Reward:
    """HPSv2.1 from `HPS_v2.1_compressed.pt` (`{'state_dict': ...}`, open_clip key names).

    The tokenizer is open_clip's CLIP BPE tokenizer (its vocabulary ships inside open_clip),
    77 tokens. `model_cfg` overrides open_clip's ViT-H-14 config (tests use a reduced one).
    `gradient_checkpointing`: open_clip's per-block activation checkpointing (off in
    T2V-Turbo's HPS reward; it trades one more forward for the activation memory).
    """
    import open_clip

    p = _require_file(path, "HPSv2.1 checkpoint", "HPS_V21_CKPT, default ~/.cache/hpsv2/HPS_v2.1_compressed.pt")
    cfg = hps_model_config(model_cfg)
    model = build_hps_model(cfg)
    state = _unwrap_state_dict(torch_load_checkpoint(p, allow_pickle), ("state_dict",), p)
    _load_strict(model, state, f"HPSv2.1 ({p})")
    del state
    context = int(cfg.get("text_cfg", {}).get("context_length", 77))
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    model.set_grad_checkpointing(gradient_checkpointing)
    return _frozen(HPSv21Reward(model.float(), tokenizer), device)


# ---------------------------------------------------------------------------- PickScore


class PickScoreReward(nn.Module):
    """PickScore: transformers CLIP-H fine-tuned on Pick-a-Pic (`ImageTextReward`).

    Default score: the cosine of the normalised features (T2V-Turbo trains on this).
    `return_logits=True` gives PickScore's published score, `logit_scale.exp() * cosine`
    (the model card's `model.logit_scale.exp() * (text_embs @ image_embs.T)`), ~100x larger.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, return_logits: bool = False, resize: str = "shortest_side"):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.return_logits = return_logits
        self.resize = resize
        _frozen(self, None)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        _, device = _model_dtype_device(self.model)
        tok = self.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        out = self.model.text_model(input_ids=tok["input_ids"].to(device), attention_mask=tok["attention_mask"].to(device))
        return self.model.text_projection(out.pooler_output)

    def forward(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        _check_batch(images, prompts, 4, "PickScore")
        dtype, device = _model_dtype_device(self.model)
        pixels = pickscore_preprocess(images.to(device=device, dtype=dtype), REWARD_INPUT_SIZE, self.resize)
        image_features = self.model.visual_projection(self.model.vision_model(pixel_values=pixels).pooler_output)
        score = _cosine(image_features, _per_prompt_features(prompts, self.encode_text))
        if self.return_logits:
            score = score * self.model.logit_scale.exp().float()
        return score


def load_pickscore(
    model_dir: str | os.PathLike,
    processor_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
    return_logits: bool = False,
    resize: str = "shortest_side",
) -> PickScoreReward:
    """PickScore from a local `yuvalkirstain/PickScore_v1` folder and a tokenizer folder.

    `model_dir`: `config.json` + `model.safetensors` (or `pytorch_model.bin`).
    `processor_dir`: the `laion/CLIP-ViT-H-14-laion2B-s32B-b79K` tokenizer files
    (`tokenizer.json`, or `vocab.json` + `merges.txt`). Both are read with
    `local_files_only=True`; the weights must match the config exactly.
    """
    from transformers import CLIPModel, CLIPTokenizer

    hint = "PICKSCORE_DIR, default ~/.cache/t2v_turbo/PickScore_v1 and .../CLIP-ViT-H-14-laion2B-s32B-b79K"
    mdir = _require_dir(model_dir, "PickScore model", [["config.json", "model.safetensors"], ["config.json", "pytorch_model.bin"]], hint)
    pdir = _require_dir(processor_dir, "PickScore tokenizer", [["tokenizer.json"], ["vocab.json", "merges.txt"]], hint)
    model, info = CLIPModel.from_pretrained(mdir, local_files_only=True, output_loading_info=True, dtype=torch.float32)
    # Checkpoints written by older transformers carry the `position_ids` buffers: harmless.
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.endswith("position_ids")]
    missing = list(info.get("missing_keys", []))
    mismatched = list(info.get("mismatched_keys", []))
    if missing or unexpected or mismatched:
        raise ValueError(f"PickScore ({mdir}): missing {missing[:8]}, unexpected {unexpected[:8]}, mismatched {mismatched[:8]}")
    tokenizer = CLIPTokenizer.from_pretrained(pdir, local_files_only=True)
    return _frozen(PickScoreReward(model, tokenizer, return_logits=return_logits, resize=resize), device)


# ---------------------------------------------------------------------------- ViCLIP


def viclip_tokenizer(tokenizer_path: str | os.PathLike | None = None, context_length: int = 32) -> Callable[[list[str]], torch.Tensor]:
    """CLIP's BPE tokenizer at ViCLIP's 32 tokens (truncated sequences end with end-of-text).

    `tokenizer_path`: a `bpe_simple_vocab_16e6.txt.gz` file (the one shipped with ViCLIP and
    with open_clip are the same file); None uses open_clip's copy.
    """
    from open_clip.tokenizer import SimpleTokenizer

    if tokenizer_path is None:
        return SimpleTokenizer(context_length=context_length)
    p = _require_file(tokenizer_path, "ViCLIP BPE vocabulary", "a bpe_simple_vocab_16e6.txt.gz file, or None for open_clip's")
    return SimpleTokenizer(bpe_path=str(p), context_length=context_length)


class VideoTextRewardBase(nn.Module, abc.ABC):
    """Shared forward of the video-text rewards: preprocess frames, encode, cosine with the text.

    Subclasses (ViCLIP, InternVideo2) differ only in how they tokenize and encode the text.
    """

    num_frames: int

    def __init__(self, model: nn.Module, num_frames: int, random_crop: bool = False):
        super().__init__()
        self.model = model
        self.num_frames = num_frames
        self.random_crop = random_crop
        self.generator: torch.Generator | None = None

    @abc.abstractmethod
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Text features, one row per prompt (normalised by the cosine in `forward`)."""

    def forward(self, videos: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        _check_batch(videos, prompts, 5, type(self).__name__)
        if videos.shape[1] != self.num_frames:
            raise ValueError(f"{type(self).__name__} takes {self.num_frames} frames per clip, got {videos.shape[1]}")
        dtype, device = _model_dtype_device(self.model)
        frames = video_reward_preprocess(videos.to(device=device, dtype=dtype), REWARD_INPUT_SIZE, self.random_crop, self.generator)
        return _cosine(self.model.encode_video(frames), _per_prompt_features(prompts, self.encode_text))


class ViCLIPReward(VideoTextRewardBase):
    """ViCLIP-L video-text reward over exactly 8 frames (`VideoTextReward`)."""

    def __init__(self, model: ViCLIP, tokenizer: Callable[[list[str]], torch.Tensor], random_crop: bool = False):
        super().__init__(model, model.config.num_frames, random_crop)
        self.tokenizer = tokenizer
        _frozen(self, None)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        _, device = _model_dtype_device(self.model)
        return self.model.encode_text(self.tokenizer(prompts).to(device))


def load_viclip(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    tokenizer_path: str | os.PathLike | None = None,
    config: ViCLIPConfig | None = None,
    allow_pickle: bool = False,
    gradient_checkpointing: bool = True,
) -> ViCLIPReward:
    """ViCLIP-L from `ViClip-InternVid-10M-FLT.pth` (`['model']`), loaded strictly.

    `gradient_checkpointing` (default on, as T2V-Turbo's ViCLIP checkpoints all 24 vision
    blocks): recompute activations in backward instead of storing them.
    """
    cfg = config or ViCLIPConfig()
    p = _require_file(path, "ViCLIP checkpoint", "VICLIP_CKPT, default ~/.cache/t2v_turbo/ViClip-InternVid-10M-FLT.pth")
    tokenizer = viclip_tokenizer(tokenizer_path, cfg.context_length)
    model = ViCLIP(cfg)
    state = _unwrap_state_dict(torch_load_checkpoint(p, allow_pickle), ("model", "state_dict", "module"), p)
    _load_strict(model, state, f"ViCLIP ({p})")
    del state
    model.set_grad_checkpointing(gradient_checkpointing)
    return _frozen(ViCLIPReward(model, tokenizer), device)


# ---------------------------------------------------------------------------- InternVideo2


@dataclass
class CheckpointMapping:
    """How an official checkpoint was mapped: the state dict to load and what was left out, why."""

    state_dict: dict[str, torch.Tensor]
    ignored: dict[str, str] = field(default_factory=dict)


def _internvideo2_ignored_reason(key: str, fusion_layer: int) -> str | None:
    if key.startswith("vision_encoder."):
        rest = key[len("vision_encoder.") :]
        if rest.startswith(UNUSED_VISION_KEYS):
            return "vision distillation head (training only)"
        return None
    if key.startswith("text_encoder.bert."):
        rest = key[len("text_encoder.bert.") :]
        if rest == "embeddings.position_ids":
            return "position id buffer"
        if ".crossattention." in rest:
            return "video-text fusion (cross-attention)"
        if rest.startswith("encoder.layer."):
            if int(rest.split(".")[2]) >= fusion_layer:
                return "video-text fusion layer (not on the text path)"
        return None
    if key.startswith("text_encoder."):
        return "text head (MLM)"
    if key.startswith(("vision_proj.", "text_proj.")):
        return None
    return "not part of the retrieval features"


def internvideo2_state_dict_from_official(
    official: Mapping[str, torch.Tensor], cfg: InternVideo2Config, checkpoint_frames: int | None = None
) -> CheckpointMapping:
    """Map an official Stage-2 `['module']` state dict onto `InternVideo2Retrieval`.

    `text_encoder.bert.X` -> `text_encoder.X` (first `fusion_layer` layers); the vision
    `pos_embed` is interpolated in time to `cfg.num_frames` exactly as the official loader
    does (its `orig_t_size`: 4 for the `-f4` checkpoint; inferred from the table's length
    when `checkpoint_frames` is None). Everything else the retrieval features never use is
    listed in `ignored` with the reason.
    """
    out: dict[str, torch.Tensor] = {}
    ignored: dict[str, str] = {}
    for key, value in official.items():
        reason = _internvideo2_ignored_reason(key, cfg.fusion_layer)
        if reason is not None:
            ignored[key] = reason
            continue
        if key.startswith("text_encoder.bert."):
            out["text_encoder." + key[len("text_encoder.bert.") :]] = value
        else:
            out[key] = value
    pos_key = "vision_encoder.pos_embed"
    if pos_key in out:
        spatial = cfg.grid_size**2
        n_tokens = out[pos_key].shape[1] - 1
        old = checkpoint_frames if checkpoint_frames is not None else n_tokens // spatial
        if old * spatial != n_tokens:
            raise ValueError(f"{pos_key} has {n_tokens} tokens, not {old} frames of {spatial} patches")
        out[pos_key] = interpolate_temporal_pos_embed(out[pos_key], old, cfg.temporal_size)
    return CheckpointMapping(out, ignored)


class InternVideo2Reward(VideoTextRewardBase):
    """InternVideo2 Stage-2 video-text reward (`VideoTextReward`), `num_frames` 4 or 8."""

    def __init__(self, model: InternVideo2Retrieval, tokenizer: Any, random_crop: bool = False):
        super().__init__(model, model.config.num_frames, random_crop)
        self.tokenizer = tokenizer
        self.max_text_length = model.config.max_text_length
        self.load_report: CheckpointMapping | None = None  # set by load_internvideo2
        _frozen(self, None)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        _, device = _model_dtype_device(self.model)
        # get_txt_feat: padding to max_length 40, truncation.
        tok = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_text_length, return_tensors="pt")
        return self.model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device))


def load_internvideo2(
    path: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
    num_frames: int = 4,
    config: InternVideo2Config | None = None,
    allow_pickle: bool = False,
    gradient_checkpointing: bool = True,
) -> InternVideo2Reward:
    """InternVideo2 Stage-2 1B from `InternVideo2-stage2_1b-224p-f4.pt` (DeepSpeed `['module']`).

    `tokenizer_dir`: a local BERT-large uncased tokenizer folder (`vocab.txt`, as in
    `google-bert/bert-large-uncased`; `tokenizer.json` also works), read with
    `local_files_only=True`. `num_frames`: 4 as the checkpoint was trained; 8 as T2V-Turbo
    v1 uses (the position table is interpolated in time, as officially).
    `gradient_checkpointing` (default on, as the official `use_checkpoint` for all 40
    blocks): recompute activations in backward instead of storing them. Every checkpoint
    key is either loaded or listed in `reward.load_report.ignored` with its reason; missing
    weights, or unknown weights inside the towers, raise.
    """
    from transformers import BertTokenizer

    cfg = config or InternVideo2Config()
    if num_frames != cfg.num_frames:
        cfg = InternVideo2Config(**{**cfg.__dict__, "num_frames": num_frames})
    p = _require_file(path, "InternVideo2 checkpoint", "INTERNVIDEO2_CKPT, default ~/.cache/t2v_turbo/InternVideo2-stage2_1b-224p-f4.pt")
    tdir = _require_dir(tokenizer_dir, "InternVideo2 BERT tokenizer", [["vocab.txt"], ["tokenizer.json"]], "INTERNVIDEO2_TOKENIZER_DIR: a bert-large-uncased tokenizer folder")
    tokenizer = BertTokenizer.from_pretrained(tdir, local_files_only=True, do_lower_case=True)
    model = InternVideo2Retrieval(cfg)
    official = _unwrap_state_dict(torch_load_checkpoint(p, allow_pickle), ("module", "model", "state_dict"), p)
    mapping = internvideo2_state_dict_from_official(official, cfg)
    del official
    unknown = sorted(k for k, why in mapping.ignored.items() if why == "not part of the retrieval features")
    if unknown:
        logger.info("InternVideo2 (%s): %d keys outside the retrieval model ignored, e.g. %s", p, len(unknown), unknown[:5])
    _load_strict(model, mapping.state_dict, f"InternVideo2 ({p})")
    model.set_grad_checkpointing(gradient_checkpointing)
    reward = InternVideo2Reward(model, tokenizer)
    reward.load_report = CheckpointMapping({}, mapping.ignored)
    return _frozen(reward, device)


__all__ = [
    "CheckpointMapping",
    "HPSv21Reward",
    "InternVideo2Reward",
    "PickScoreReward",
    "ViCLIPReward",
    "build_hps_model",
    "center_crop",
    "hps_model_config",
    "hps_preprocess",
    "internvideo2_state_dict_from_official",
    "load_hpsv21",
    "load_internvideo2",
    "load_pickscore",
    "load_viclip",
    "pickscore_preprocess",
    "resize_shortest_side",
    "torch_load_checkpoint",
    "video_reward_preprocess",
    "viclip_tokenizer",
]
