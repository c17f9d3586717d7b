"""Degradations of clips [B, F, 3, H, W] in [0, 1], each with a severity in [0, 1].

Imaging degradations (blur, noise, pixelation) are what MUSIQ-style imaging quality
measures; aesthetic ones (washed-out colour, low contrast, colour cast, bad exposure,
clutter) what an aesthetic predictor penalises; temporal ones (flicker, shuffled frames,
jitter) what the temporal dimensions penalise. The quality evaluator and the image reward's
preference pairs are trained with them, and the benchmark's tests use them to check that
each dimension drops when its own property is damaged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGING = ("blur", "noise", "pixelate")
AESTHETIC = ("desaturate", "low_contrast", "color_cast", "exposure", "clutter")
TEMPORAL = ("flicker", "shuffle", "jitter")


def _frames(x: torch.Tensor):
    b, f = x.shape[:2]
    return x.reshape(b * f, *x.shape[2:]), (b, f)


def blur(x: torch.Tensor, severity: float) -> torch.Tensor:
    import torchvision.transforms.functional as TF

    sigma = 0.3 + 1.7 * severity
    k = 2 * int(3 * sigma) + 1
    flat, (b, f) = _frames(x)
    return TF.gaussian_blur(flat, [k, k], [sigma, sigma]).reshape(x.shape)


def noise(x: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    return (x + torch.randn(x.shape, generator=generator) * (0.02 + 0.2 * severity)).clamp(0, 1)


def pixelate(x: torch.Tensor, severity: float) -> torch.Tensor:
    factor = 2 if severity < 0.5 else 4
    flat, _ = _frames(x)
    h, w = flat.shape[-2:]
    small = F.interpolate(flat, size=(h // factor, w // factor), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest").reshape(x.shape)


def desaturate(x: torch.Tensor, severity: float) -> torch.Tensor:
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(-3, keepdim=True)
    return x + (gray - x) * (0.4 + 0.6 * severity)


def low_contrast(x: torch.Tensor, severity: float) -> torch.Tensor:
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    return mean + (x - mean) * (1 - 0.75 * severity)


def color_cast(x: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    cast = 1 + (torch.rand(3, generator=generator) * 2 - 1) * 0.6 * severity
    return (x * cast.view(3, 1, 1)).clamp(0, 1)


def exposure(x: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    darker = bool(torch.rand(1, generator=generator) < 0.5)
    return (x * (1 - 0.7 * severity) if darker else 1 - (1 - x) * (1 - 0.7 * severity)).clamp(0, 1)


def clutter(x: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random coloured blobs stuck on the frame (the same in every frame of a clip)."""
    b, f, c, h, w = x.shape
    out = x.clone()
    n = 1 + int(5 * severity)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for i in range(b):
        for _ in range(n):
            cy, cx = (float(v) for v in torch.rand(2, generator=generator) * torch.tensor([h, w]))
            r = 1.5 + 3 * float(torch.rand(1, generator=generator))
            mask = (((ys - cy) ** 2 + (xs - cx) ** 2) < r * r).float()
            color = torch.rand(3, generator=generator)
            out[i] = out[i] * (1 - mask) + color.view(3, 1, 1) * mask
    return out


def flicker(x: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    gains = 1 + (torch.rand(x.shape[0], x.shape[1], 1, 1, 1, generator=generator) * 2 - 1) * 0.5 * severity
    return (x * gains).clamp(0, 1)


def shuffle(x: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    perm = torch.randperm(x.shape[1], generator=generator)
    return x[:, perm]


def jitter(x: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each frame shifted by a random few pixels: shaky, non-smooth motion."""
    out = torch.empty_like(x)
    amp = 1 + int(3 * severity)
    for t in range(x.shape[1]):
        dy, dx = (int(v) for v in torch.randint(-amp, amp + 1, (2,), generator=generator))
        out[:, t] = torch.roll(x[:, t], shifts=(dy, dx), dims=(-2, -1))
    return out


DEGRADATIONS = {
    "blur": blur,
    "noise": noise,
    "pixelate": pixelate,
    "desaturate": desaturate,
    "low_contrast": low_contrast,
    "color_cast": color_cast,
    "exposure": exposure,
    "clutter": clutter,
    "flicker": flicker,
    "shuffle": shuffle,
    "jitter": jitter,
}


def apply(name: str, x: torch.Tensor, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    fn = DEGRADATIONS[name]
    if name in ("blur", "pixelate", "desaturate", "low_contrast"):
        return fn(x, severity)
    return fn(x, severity, generator=generator)


def quality_targets(name: str | None, severity: float) -> tuple[float, float]:
    """(aesthetic, imaging) targets of the quality evaluator for a degradation."""
    if name is None:
        return 1.0, 1.0
    if name in IMAGING:
        return 1.0 - 0.35 * severity, 1.0 - 0.8 * severity
    return 1.0 - 0.8 * severity, 1.0 - 0.2 * severity


def random_degradation(rng: np.random.Generator, kinds=IMAGING + AESTHETIC) -> tuple[str, float]:
    return str(rng.choice(kinds)), float(rng.uniform(0.15, 1.0))
