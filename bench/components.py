"""Real components for a training config: the `ms` / `vc2` teachers and the paper's reward models.

Weight files are found by `bench.weights.resolve_weights` (config `weights.<name>` paths, then
environment variables, then the offline Hugging Face cache); anything missing is one error
that lists every file and where it was looked for. Nothing is ever downloaded.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.config import TrainConfig


def _explicit(cfg: TrainConfig, names) -> dict[str, Any]:
    return {n: cfg.weights[n] for n in names if cfg.weights.get(n)}


def load_real_teacher(cfg: TrainConfig, device: str | torch.device = "cpu"):
    """The `ms` or `vc2` teacher bundle; its `make_student` builds the LoRA student."""
    from bench.weights import resolve_weights, teacher_requirements
    from t2v_turbo_core.teachers import load_modelscope, load_videocrafter2

    required = teacher_requirements(cfg.teacher)
    paths = resolve_weights(required, explicit=_explicit(cfg, required))
    (name,) = required
    if cfg.teacher == "ms":
        return load_modelscope(paths[name], device=device)
    if cfg.teacher == "vc2":
        return load_videocrafter2(paths[name], device=device)
    raise ValueError(f"no real teacher named {cfg.teacher!r}")


# The reward models by config name: (weights registry entry, loader).
IMAGE_REWARDS = ("hpsv21", "pickscore")
VIDEO_REWARDS = {"viclip": "viclip", "internvid2": "internvideo2"}


def load_real_rewards(cfg: TrainConfig, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """(image-text reward, video-text reward) the variant needs, from the paper's checkpoints.

    Every missing file of both models is reported in one error before anything is loaded.
    """
    from bench.weights import MissingWeightsError, resolve_weights, reward_requirements
    from t2v_turbo_core import reward_models as R

    wanted: list[str] = []
    if cfg.uses_image_reward:
        if cfg.rm_img not in IMAGE_REWARDS:
            raise ValueError(f"rm_img={cfg.rm_img!r}: real teachers take one of {', '.join(IMAGE_REWARDS)}")
        wanted.append(cfg.rm_img)
    if cfg.uses_video_reward:
        wanted.append(VIDEO_REWARDS[cfg.rm_vid])
    required: dict[str, Any] = {}
    for reward in wanted:
        required.update(reward_requirements(reward))
    paths = resolve_weights(required, explicit=_explicit(cfg, required)) if required else {}

    image = video = None
    if cfg.uses_image_reward:
        if cfg.rm_img == "hpsv21":
            image = R.load_hpsv21(paths["hpsv21"], device=device)
        else:
            image = R.load_pickscore(paths["pickscore"], paths["pickscore_processor"], device=device)
    if cfg.uses_video_reward:
        if cfg.rm_vid == "viclip":
            video = R.load_viclip(paths["viclip"], device=device)
        else:
            # InternVideo2 Stage-2 was trained with 4 frames; T2V-Turbo v1 feeds it 8.
            n = cfg.video_reward_frames or 4
            video = R.load_internvideo2(paths["internvideo2"], paths["internvideo2_tokenizer"], device=device, num_frames=n)
    _ = MissingWeightsError  # re-exported for callers that catch it from here
    return image, video
