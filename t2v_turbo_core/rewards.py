"""Mixed reward feedback through the single-step prediction (T2V-Turbo §3.2).

Reward models sit behind two small protocols and must be differentiable with respect to
pixels; their preprocessing (resize / pad / crop / normalise) is done in torch so that
gradients reach the decoded video. Scores are cosine similarities of L2-normalised
features (no logit scale), as in T2V-Turbo's reward functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F

# OpenAI CLIP statistics (HPSv2.1, PickScore, the tiny image-text reward).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ImageNet statistics (ViCLIP and InternVideo2 inputs in T2V-Turbo's reward code).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# M, the number of frames the image-text reward scores per video: the one default of the
# project (DistillationConfig and the training configs read it from here). 6 is the paper's
# setting as this project reads it; T2V-Turbo's released v1 code uses 5 (v2: 2), which the
# reproduction configs set explicitly.
DEFAULT_IMAGE_REWARD_FRAMES = 6


@runtime_checkable
class ImageTextReward(Protocol):
    """images [N, 3, H, W] in [0, 1] + N prompts -> score per image [N]."""

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...


@runtime_checkable
class VideoTextReward(Protocol):
    """clips [B, n, 3, H, W] in [0, 1] + B prompts -> score per clip [B].

    `num_frames` is how many frames the model takes (ViCLIP: 8; InternVideo2 Stage-2: 4 in
    training, 8 in T2V-Turbo v1's code).
    """

    num_frames: int

    def __call__(self, videos: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Channel normalisation of [..., 3, H, W] images."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - m) / s


def _resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(images.shape[-2:]) == size:
        return images
    antialias = mode in ("bilinear", "bicubic")
    return F.interpolate(images, size=size, mode=mode, align_corners=False if antialias else None, antialias=antialias)


def resize_longest_side_and_pad(images: torch.Tensor, size: int, fill: float = 0.0, mode: str = "bicubic") -> torch.Tensor:
    """HPSv2's evaluation transform: longest side -> `size`, then centre zero-pad to a square."""
    h, w = images.shape[-2:]
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    out = _resize(images, (new_h, new_w), mode)
    pad_h, pad_w = size - new_h, size - new_w
    return F.pad(out, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=fill)


def sample_image_reward_frames(batch: int, num_frames: int, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """M random frames per video for the image-text reward, [B, M].

    Drawn without replacement when M <= F, as T2V-Turbo's current code does (`randperm`); its
    first release drew with replacement (`randint`), which matters only when M is close to F.
    """
    if m < 1:
        raise ValueError(f"M must be >= 1, got {m}")
    if m <= num_frames:
        return torch.stack([torch.randperm(num_frames, generator=generator)[:m] for _ in range(batch)])
    return torch.randint(0, num_frames, (batch, m), generator=generator)


def sample_video_reward_frames(batch: int, num_frames: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n frames strided evenly with a random start, [B, n] (T2V-Turbo's video-reward sampling).

    stride = F // n, start ~ U{0, ..., stride - 1}, frames start, start + stride, ...
    """
    if not 1 <= n <= num_frames:
        raise ValueError(f"the video reward needs {n} frames but the video has {num_frames}")
    stride = num_frames // n
    starts = torch.randint(0, stride, (batch,), generator=generator)
    return starts[:, None] + torch.arange(n)[None, :] * stride


@dataclass
class RewardTerms:
    """Mean rewards (attached to the graph) and the reward part of the loss."""

    loss: torch.Tensor
    image_reward: torch.Tensor | None
    video_reward: torch.Tensor | None


def mixed_reward_loss(
    pred_latents: torch.Tensor,
    prompts: Sequence[str],
    vae,
    image_reward: ImageTextReward | None = None,
    video_reward: VideoTextReward | None = None,
    beta_img: float = 1.0,
    beta_vid: float = 2.0,
    image_frames: int = DEFAULT_IMAGE_REWARD_FRAMES,
    video_frames: int | None = None,
    generator: torch.Generator | None = None,
) -> RewardTerms:
    """`- beta_img * mean(R_img) - beta_vid * mean(R_vid)` on the decoded single-step prediction.

    `pred_latents` [B, C, F, h, w] is f_theta(z_{t_{n+k}}, w, c, t_{n+k}); it is decoded through
    the VAE decoder *with* gradients (`vae` is a `VideoVAE`), and only the frames the reward
    models look at are decoded. Either reward may be absent: that is what the variants are.
    """
    b, _, f = pred_latents.shape[:3]
    loss = pred_latents.new_zeros(())
    img_score = vid_score = None
    if image_reward is None and video_reward is None:
        return RewardTerms(loss, None, None)

    parts: list[torch.Tensor] = []
    if image_reward is not None:
        parts.append(sample_image_reward_frames(b, f, image_frames, generator))
    if video_reward is not None:
        n = video_frames if video_frames is not None else video_reward.num_frames
        parts.append(sample_video_reward_frames(b, f, n, generator))
    wanted = torch.cat(parts, dim=1)
    if wanted.shape[1] >= f:
        # Cheaper to decode every frame once and index than to decode duplicates.
        frames = vae.decode_frames(pred_latents, torch.arange(f).expand(b, f))
        picked = [torch.gather(frames, 1, p[:, :, None, None, None].to(frames.device).expand(-1, -1, *frames.shape[2:])) for p in parts]
    else:
        frames = vae.decode_frames(pred_latents, wanted)
        picked = list(frames.split([p.shape[1] for p in parts], dim=1))

    i = 0
    if image_reward is not None:
        images = picked[i]
        i += 1
        m = images.shape[1]
        per_frame_prompts = [p for p in prompts for _ in range(m)]
        scores = image_reward(images.reshape(b * m, *images.shape[2:]), per_frame_prompts)
        img_score = scores.float().mean()
        loss = loss - beta_img * img_score
    if video_reward is not None:
        clips = picked[i]
        vid_score = video_reward(clips, list(prompts)).float().mean()
        loss = loss - beta_vid * vid_score
    return RewardTerms(loss, img_score, vid_score)
