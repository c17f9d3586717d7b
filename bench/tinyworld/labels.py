"""Ground-truth labels of rendered clips for training and checking the evaluators."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bench.tinyworld.world import ACTIONS, CAMERAS, COLORS, FRAMES, SCENES, SHAPES, STYLES, SceneSpec, screen_tracks

IGNORE = -100


def frame_labels(specs: Sequence[SceneSpec], frames: int = FRAMES) -> dict[str, torch.Tensor]:
    """Per-frame labels [B, F, ...]: presence, colour, screen position per shape, scene, style."""
    b = len(specs)
    presence = np.zeros((b, frames, len(SHAPES)), dtype=np.float32)
    color = np.full((b, frames, len(SHAPES)), IGNORE, dtype=np.int64)
    position = np.zeros((b, frames, len(SHAPES), 2), dtype=np.float32)
    scene = np.zeros((b, frames), dtype=np.int64)
    style = np.zeros((b, frames), dtype=np.int64)
    for i, s in enumerate(specs):
        centres, visible = screen_tracks(s, frames)
        for j, o in enumerate(s.objects):
            k = SHAPES.index(o.shape)
            presence[i, :, k] = visible[j]
            position[i, :, k] = centres[j]
            if s.style != "grayscale":
                color[i, :, k] = np.where(visible[j], COLORS.index(o.color), IGNORE)
        scene[i] = SCENES.index(s.scene)
        style[i] = STYLES.index(s.style)
    t = torch.from_numpy
    return {"presence": t(presence), "color": t(color), "position": t(position), "scene": t(scene), "style": t(style)}


def clip_labels(specs: Sequence[SceneSpec]) -> dict[str, torch.Tensor]:
    """Per-clip labels: the subject's action (single-subject clips; still for pairs) and camera."""
    action = np.array(
        [ACTIONS.index(s.objects[0].action) if len(s.objects) == 1 else (0 if s.objects else IGNORE) for s in specs],
        dtype=np.int64,
    )
    camera = np.array([CAMERAS.index(s.camera) for s in specs], dtype=np.int64)
    return {"action": torch.from_numpy(action), "camera": torch.from_numpy(camera)}
