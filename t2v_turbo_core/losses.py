"""Distance functions d(., .) for the consistency distillation loss."""

from __future__ import annotations

import torch


def huber_loss(pred: torch.Tensor, target: torch.Tensor, c: float = 0.001) -> torch.Tensor:
    """Pseudo-Huber distance `mean(sqrt((a - b)^2 + c^2) - c)` (LCM; T2V-Turbo uses c = 0.001)."""
    diff = pred.float() - target.float()
    return torch.mean(torch.sqrt(diff**2 + c**2) - c)


def l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred.float() - target.float()) ** 2)


def distance(pred: torch.Tensor, target: torch.Tensor, loss_type: str = "huber", huber_c: float = 0.001) -> torch.Tensor:
    if loss_type == "huber":
        return huber_loss(pred, target, huber_c)
    if loss_type == "l2":
        return l2_loss(pred, target)
    raise ValueError(f"unknown loss type {loss_type!r}; use 'huber' or 'l2'")
