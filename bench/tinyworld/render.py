"""Vectorised torch renderer for the tiny world: SceneSpecs -> videos [B, F, 3, H, W] in [0, 1].

Scenes are analytic functions of world coordinates and objects are signed distance
functions, so camera pans and zooms are a change of coordinates and edges are
anti-aliased by their distance in pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from bench.tinyworld.world import (
    COLOR_RGB,
    FRAMES,
    SCENES,
    SHAPES,
    SIZE,
    STYLES,
    SceneSpec,
    camera_track,
    object_track,
)

MAX_OBJECTS = 2
OUTLINE_PX = 1.6
STRIPE_PERIOD_PX = 5.0


# --- signed distances (object-local units, radius 1) -----------------------------------


def _sd_box(px: torch.Tensor, py: torch.Tensor, bx: float, by: float) -> torch.Tensor:
    dx, dy = px.abs() - bx, py.abs() - by
    outside = torch.sqrt(dx.clamp(min=0) ** 2 + dy.clamp(min=0) ** 2)
    inside = torch.maximum(dx, dy).clamp(max=0)
    return outside + inside


def _sd_triangle(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    # Equilateral triangle of circumradius 1 pointing up (screen y grows downwards).
    r = 0.87
    k = math.sqrt(3.0)
    y = -py  # flip to y-up
    x = px.abs() - r
    y = y + r / k
    fold = (x + k * y) > 0
    x2 = torch.where(fold, (x - k * y) / 2, x)
    y2 = torch.where(fold, (-k * x - y) / 2, y)
    x2 = x2 - x2.clamp(-2 * r, 0.0)
    return -torch.sqrt(x2**2 + y2**2) * torch.sign(y2)


def _sd_star(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    # Five-pointed star (Inigo Quilez's exact 2D star distance, rewritten for tensors).
    r, rf = 1.0, 0.45
    k1x, k1y = 0.809016994375, -0.587785252292
    k2x, k2y = -k1x, k1y
    x, y = px.abs(), -py
    d1 = (k1x * x + k1y * y).clamp(min=0)
    x, y = x - 2 * d1 * k1x, y - 2 * d1 * k1y
    d2 = (k2x * x + k2y * y).clamp(min=0)
    x, y = x - 2 * d2 * k2x, y - 2 * d2 * k2y
    x = x.abs()
    y = y - r
    bax, bay = rf * (-k1y), rf * k1x - 1.0
    h = ((x * bax + y * bay) / (bax**2 + bay**2)).clamp(0.0, r)
    return torch.sqrt((x - bax * h) ** 2 + (y - bay * h) ** 2) * torch.sign(y * bax - x * bay)


def _sd_shapes(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Distances to every shape, stacked on a new last axis in `SHAPES` order."""
    circle = torch.sqrt(px**2 + py**2) - 1.0
    square = _sd_box(px, py, 0.8, 0.8)
    triangle = _sd_triangle(px, py * 1.0 + 0.15)
    cross = torch.minimum(_sd_box(px, py, 1.0, 0.32), _sd_box(px, py, 0.32, 1.0))
    star = _sd_star(px, py * 1.0 + 0.05)
    return torch.stack([circle, square, triangle, cross, star], dim=-1)


# --- scenes -----------------------------------------------------------------------------


def _mix(a: torch.Tensor, b: Sequence[float], m: torch.Tensor) -> torch.Tensor:
    return a * (1 - m[..., None]) + torch.tensor(b, dtype=a.dtype) * m[..., None]


def _smooth(d: torch.Tensor, px: float) -> torch.Tensor:
    """Coverage of the region d < 0 where d is a distance in world units and px one pixel."""
    return (0.5 - d / px).clamp(0.0, 1.0)


def _scene_colors(x: torch.Tensor, y: torch.Tensor, offset: torch.Tensor, jitter: torch.Tensor, pix: torch.Tensor) -> torch.Tensor:
    """All scenes evaluated at world coordinates x, y: [..., n_scenes, 3]."""
    xs = x + offset
    shape = x.shape
    out = []
    # desert: pale sky, sun, dunes whose crest varies with x
    horizon = 0.15 + 0.08 * jitter + 0.12 * torch.sin(2.2 * xs)
    sky = torch.stack([0.78 + 0.1 * (y + 1) / 2, 0.84 + 0.05 * (y + 1) / 2, 0.95 - 0.1 * (y + 1) / 2], -1)
    c = _mix(sky, (0.98, 0.9, 0.55), _smooth(torch.sqrt((xs - 0.7) ** 2 + (y + 0.62) ** 2) - 0.16, pix))
    sand = torch.stack([0.86 - 0.12 * torch.sin(3 * xs) ** 2, 0.68 - 0.1 * torch.sin(3 * xs) ** 2, 0.42 + 0 * xs], -1)
    out.append(torch.where((y > horizon)[..., None], sand, c))
    # night: dark gradient, moon, a lattice of stars
    c = torch.stack([0.04 + 0.04 * (y + 1), 0.05 + 0.05 * (y + 1), 0.18 + 0.08 * (y + 1)], -1)
    c = _mix(c, (0.95, 0.93, 0.7), _smooth(torch.sqrt((xs + 0.55) ** 2 + (y + 0.55) ** 2) - 0.17, pix))
    gx, gy = torch.remainder(xs * 2.5 + 0.3 * torch.floor(y * 2.5), 1.0), torch.remainder(y * 2.5 + 0.5, 1.0)
    star = _smooth(torch.sqrt((gx - 0.5) ** 2 + (gy - 0.5) ** 2) * 0.4 - 0.025, pix)
    out.append(_mix(c, (0.9, 0.9, 0.95), star * (y < 0.5)))
    # room: grey wall, brown floor, a window and a picture frame
    floor = 0.35 + 0.06 * jitter
    c = torch.full((*shape, 3), 0.58)
    c = _mix(c, (0.55, 0.78, 0.95), _smooth(_sd_box(xs + 0.45, y + 0.35, 0.28, 0.22), pix))
    c = _mix(c, (0.35, 0.22, 0.12), _smooth(_sd_box(xs - 0.75, y + 0.3, 0.16, 0.2), pix))
    wood = torch.stack([0.5 + 0.06 * torch.sin(9 * xs), 0.32 + 0.04 * torch.sin(9 * xs), 0.18 + 0 * xs], -1)
    out.append(torch.where((y > floor)[..., None], wood, c))
    # underwater: teal-to-navy gradient, bubbles, sand floor
    t = ((y + 1) / 2).clamp(0, 1)
    c = torch.stack([0.05 + 0.05 * (1 - t), 0.45 - 0.3 * t, 0.6 - 0.25 * t], -1)
    for bx, by, br in ((-0.8, -0.2, 0.09), (-0.3, 0.4, 0.07), (0.45, -0.5, 0.1), (1.0, 0.2, 0.08), (-1.3, 0.6, 0.08)):
        ring = (torch.sqrt((xs - bx) ** 2 + (y - by) ** 2) - br).abs() - 0.025
        c = _mix(c, (0.75, 0.92, 0.98), _smooth(ring, pix))
    out.append(torch.where((y > 0.8 + 0.05 * jitter)[..., None], torch.tensor([0.75, 0.68, 0.45]).expand(*shape, 3), c))
    # forest: dark green, tree trunks, a grassy floor
    c = torch.stack([0.1 + 0 * x, 0.3 - 0.08 * (y + 1) / 2, 0.12 + 0 * x], -1)
    for tx in (-1.4, -0.8, -0.15, 0.55, 1.2):
        c = _mix(c, (0.4, 0.26, 0.12), _smooth(_sd_box(xs - tx, y + 0.2, 0.07, 0.9), pix))
    out.append(torch.where((y > 0.65 + 0.05 * jitter)[..., None], torch.tensor([0.22, 0.55, 0.18]).expand(*shape, 3), c))
    return torch.stack(out, dim=-2)


# --- batching specs into tensors ---------------------------------------------------------


def _spec_tensors(specs: Sequence[SceneSpec], frames: int) -> dict[str, torch.Tensor]:
    b = len(specs)
    track = np.zeros((b, MAX_OBJECTS, frames, 4), dtype=np.float32)
    track[..., 2] = 1.0  # absent slots keep a unit radius (no division by zero)
    present = np.zeros((b, MAX_OBJECTS), dtype=np.float32)
    shape_id = np.zeros((b, MAX_OBJECTS), dtype=np.int64)
    rgb = np.zeros((b, MAX_OBJECTS, 3), dtype=np.float32)
    cam = np.zeros((b, frames, 3), dtype=np.float32)
    scene_id = np.zeros(b, dtype=np.int64)
    style_id = np.zeros(b, dtype=np.int64)
    offset = np.zeros(b, dtype=np.float32)
    jitter = np.zeros(b, dtype=np.float32)
    for i, s in enumerate(specs):
        if len(s.objects) > MAX_OBJECTS:
            raise ValueError(f"at most {MAX_OBJECTS} objects per clip")
        for j, o in enumerate(s.objects):
            track[i, j] = object_track(o, frames)
            present[i, j] = 1.0
            shape_id[i, j] = SHAPES.index(o.shape)
            base = np.array(COLOR_RGB[o.color], dtype=np.float32)
            if s.color_jitter:
                base = base + np.array(s.color_jitter[3 * j : 3 * j + 3], dtype=np.float32)
            rgb[i, j] = np.clip(base, 0, 1)
        cam[i] = camera_track(s.camera, frames)
        scene_id[i] = SCENES.index(s.scene)
        style_id[i] = STYLES.index(s.style)
        offset[i] = s.scene_offset
        jitter[i] = s.scene_jitter
    as_t = torch.from_numpy
    return dict(track=as_t(track), present=as_t(present), shape_id=as_t(shape_id), rgb=as_t(rgb), cam=as_t(cam),
                scene_id=as_t(scene_id), style_id=as_t(style_id), offset=as_t(offset), jitter=as_t(jitter))


@torch.no_grad()
def render(specs: Sequence[SceneSpec], frames: int = FRAMES, size: int = SIZE, with_object_area: bool = False):
    """Render clips: [B, F, 3, size, size], float32 in [0, 1].

    with_object_area: also return the objects' filled area [B, F, size, size] in [0, 1]
    (whatever the appearance style: an outlined object covers its interior here too).
    """
    p = _spec_tensors(specs, frames)
    b = len(specs)
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    sy, sx = torch.meshgrid(lin, lin, indexing="ij")  # screen coords in [-1, 1]
    cx, cy, zoom = (p["cam"][..., i][:, :, None, None] for i in range(3))  # [B, F, 1, 1]
    wx = sx / zoom + cx  # world coords [B, F, H, W]
    wy = sy / zoom + cy
    pix = (2.0 / size) / zoom  # one screen pixel in world units [B, F, 1, 1]

    all_scenes = _scene_colors(wx, wy, p["offset"][:, None, None, None], p["jitter"][:, None, None, None], pix)
    idx = p["scene_id"][:, None, None, None, None, None].expand(b, frames, size, size, 1, 3)
    img = torch.gather(all_scenes, 4, idx).squeeze(4)  # [B, F, H, W, 3]

    style = p["style_id"]
    area = torch.zeros(b, frames, size, size)
    for j in range(MAX_OBJECTS):
        ox, oy, rad, ang = (p["track"][:, j, :, i][:, :, None, None] for i in range(4))
        dx, dy = (wx - ox) / rad, (wy - oy) / rad
        ca, sa = torch.cos(-ang), torch.sin(-ang)
        lx, ly = ca * dx - sa * dy, sa * dx + ca * dy
        sd = _sd_shapes(lx, ly)
        sid = p["shape_id"][:, j][:, None, None, None, None].expand(b, frames, size, size, 1)
        d_px = torch.gather(sd, 4, sid).squeeze(4) * rad / pix  # distance in screen pixels
        fill = (0.5 - d_px).clamp(0, 1)
        rim = ((0.5 - (d_px + OUTLINE_PX / 2).abs() + OUTLINE_PX / 2).clamp(0, 1)) * fill.gt(0).float().clamp(max=1)
        base = p["rgb"][:, j][:, None, None, None, :]
        # Solid objects get a darker rim so that they read against any background.
        solid = base * (1 - 0.45 * rim[..., None])
        phase = (lx + ly) * rad / pix / STRIPE_PERIOD_PX
        stripe = (0.5 + 0.5 * torch.sin(2 * math.pi * phase) * 3).clamp(0, 1)
        striped = base * (0.35 + 0.65 * stripe[..., None]) * (1 - 0.45 * rim[..., None])
        is_outline = (style == STYLES.index("outline"))[:, None, None, None]
        is_striped = (style == STYLES.index("striped"))[:, None, None, None]
        color = torch.where(is_striped[..., None], striped, solid)
        cover = torch.where(is_outline, rim, fill) * p["present"][:, j][:, None, None, None]
        img = img * (1 - cover[..., None]) + color * cover[..., None]
        area = torch.maximum(area, fill * p["present"][:, j][:, None, None, None])

    gray = (img * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True).expand_as(img)
    img = torch.where((style == STYLES.index("grayscale"))[:, None, None, None, None], gray, img)
    video = img.clamp(0, 1).permute(0, 1, 4, 2, 3).contiguous()
    return (video, area) if with_object_area else video


def contact_sheet(videos: torch.Tensor, captions: Sequence[str] | None = None, scale: int = 3, path: str | None = None):
    """A PNG grid: one row per video, its frames side by side (optionally captioned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b, f = videos.shape[:2]
    fig, axes = plt.subplots(b, 1, figsize=(f * 0.32 * scale + 0.2, b * 0.42 * scale + 0.3), squeeze=False)
    for i in range(b):
        strip = videos[i].permute(2, 0, 3, 1).reshape(videos.shape[3], f * videos.shape[4], 3).clamp(0, 1).numpy()
        ax = axes[i, 0]
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if captions is not None:
            ax.set_title(captions[i], fontsize=7, loc="left", pad=2)
    fig.tight_layout(pad=0.3)
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
