"""T2V-Turbo-v2's image reward mix: HPSv2.1 + CLIP-H (open_clip ViT-H-14, laion2B-s32B-b79K).

The released v2 training uses `--reward_fn_name weighted_hpsv2_clip`: R_img = a HPSv2.1 + b CLIP,
with (a, b) = `--reward_weights`, default (1, 1) in the training script (the reward factory's
own default, (1, 5), is overridden there). Its CLIP score is open_clip's ViT-H-14 with the
laion2B-s32B-b79K weights and its own preprocessing, which differs from HPSv2's: the decoded
frames in [0, 1] are resized to exactly 224 x 224 (bicubic, aspect ratio not kept, no crop, no
padding), then normalised with OpenAI CLIP's mean/std; the score is the cosine of the
L2-normalised image and text features (no logit scale), text features without gradient.

The weights come from a local file in the official layouts: the Hugging Face repository's
`open_clip_pytorch_model.bin` (a bare open_clip state dict, torch pickle) or
`open_clip_model.safetensors`; nothing is downloaded. The architecture is open_clip's bundled
ViT-H-14 config (GELU; tests pass a reduced config at tiny width).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from t2v_turbo_core.reward_models import (
    REWARD_INPUT_SIZE,
    _check_batch,
    _cosine,
    _frozen,
    _load_strict,
    _model_dtype_device,
    _per_prompt_features,
    _require_file,
    _unwrap_state_dict,
    build_hps_model,
    hps_model_config,
    torch_load_checkpoint,
)
from t2v_turbo_core.rewards import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, normalize

CLIP_H_FILES = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")
CLIP_H_HINT = ("CLIP_H_CKPT: laion/CLIP-ViT-H-14-laion2B-s32B-b79K's open_clip_pytorch_model.bin "
               "(or open_clip_model.safetensors)")
RELEASED_IMAGE_REWARD_WEIGHTS = (1.0, 1.0)  # train_latent_t2v_turbo_v2.py --reward_weights default


def clip_h_preprocess(images: torch.Tensor, size: int = REWARD_INPUT_SIZE) -> torch.Tensor:
    """The released CLIP score's transform on [N, 3, H, W] in [0, 1]: resize to size x size, normalise."""
    resized = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return normalize(resized, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


class ClipHReward(nn.Module):
    """CLIP-H image-text score (`ImageTextReward`)."""

    def __init__(self, model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], image_size: int = REWARD_INPUT_SIZE):
        super().__init__()
        self.model, self.tokenizer, self.image_size = model, tokenizer, image_size
        _frozen(self, None)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        _, device = _model_dtype_device(self.model)
        return self.model.encode_text(self.tokenizer(prompts).to(device))

    def forward(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        _check_batch(images, prompts, 4, "CLIP-H")
        dtype, device = _model_dtype_device(self.model)
        pixels = clip_h_preprocess(images.to(device=device, dtype=dtype), self.image_size)
        return _cosine(self.model.encode_image(pixels), _per_prompt_features(prompts, self.encode_text))


def load_clip_h(path: str | os.PathLike | None, device: torch.device | str = "cpu", model_cfg: Mapping[str, Any] | None = None,
                allow_pickle: bool = False) -> ClipHReward:
    """CLIP-H from a local weights file (see the module doc); strict load, frozen, eval mode."""
    import open_clip

    p = _require_file(path, "CLIP-H (open_clip ViT-H-14 laion2B) weights", CLIP_H_HINT)
    if p.suffix == ".safetensors":
        from t2v_turbo_core.safe_io import load_safetensors

        state = load_safetensors(p)
    else:
        state = _unwrap_state_dict(torch_load_checkpoint(p, allow_pickle), ("state_dict",), p)
    cfg = hps_model_config(model_cfg)
    model = build_hps_model(cfg)
    try:
        _load_strict(model, state, f"CLIP-H ({p})")
    except RuntimeError as err:  # a tensor of another shape: torch's message names it
        raise ValueError(f"CLIP-H ({p}): checkpoint does not match the architecture: {str(err)[:400]}") from None
    del state
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=int(cfg.get("text_cfg", {}).get("context_length", 77)))
    return _frozen(ClipHReward(model.float(), tokenizer), device)


class WeightedImageReward(nn.Module):
    """sum_i weight_i R_i(images, prompts): the released `weighted_hpsv2_clip` with (HPSv2.1, CLIP-H)."""

    def __init__(self, rewards: Sequence[Any], weights: Sequence[float]):
        super().__init__()
        if len(rewards) != len(weights) or not rewards:
            raise ValueError(f"{len(rewards)} reward models but {len(weights)} weights")
        if not all(torch.isfinite(torch.tensor(float(w))) for w in weights):
            raise ValueError(f"image reward weights must be finite, got {list(weights)}")
        # The modules are registered (so .to() and .eval() reach them); plain callables are kept too.
        self.members = nn.ModuleList([r for r in rewards if isinstance(r, nn.Module)])
        self._rewards, self.weights = list(rewards), [float(w) for w in weights]

    def forward(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return sum(w * r(images, prompts) for w, r in zip(self.weights, self._rewards))
