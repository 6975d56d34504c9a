"""Mask losses on ``(B, 1, H, W)`` logits with a per-pixel weight (0 on padding and invalid pixels).

Each loss is averaged per image over its weighted pixels, then over the batch, so one large image
does not outweigh small ones. SAM's paper combines focal and dice losses 20 : 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from samgeo_pipeline.finetune.config import FinetuneConfig


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss per image.

    Args:
        logits, target, weight: ``float (B, 1, H, W)``; target 0/1, weight >= 0.
        alpha: weight of the positive class (``alpha`` for water, ``1 - alpha`` for land); < 0: none.
        gamma: focusing exponent.

    Returns:
        ``(B,)`` weighted mean over each image's pixels.
    """
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return _weighted_mean(loss, weight)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss per image: ``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` over weighted pixels.

    Returns:
        ``(B,)``; 0 for a perfect prediction, near 0 when both are empty (the ``smooth`` term).
    """
    prob = torch.sigmoid(logits) * weight
    t = target * weight
    dims = tuple(range(1, logits.ndim))
    inter = (prob * t).sum(dims)
    return 1 - (2 * inter + smooth) / (prob.sum(dims) + t.sum(dims) + smooth)


def bce_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per image, weighted mean over its pixels: ``(B,)``."""
    return _weighted_mean(F.binary_cross_entropy_with_logits(logits, target, reduction="none"), weight)


def mask_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, config: FinetuneConfig) -> torch.Tensor:
    """The configured loss per image, ``(B,)``: ``focal_weight * focal + dice_weight * dice`` or BCE.

    Computed in float32 whatever the autocast dtype of ``logits``.
    """
    logits, target, weight = logits.float(), target.float(), weight.float()
    if config.loss == "bce":
        return bce_loss(logits, target, weight)
    focal = focal_loss(logits, target, weight, config.focal_alpha, config.focal_gamma)
    return config.focal_weight * focal + config.dice_weight * dice_loss(logits, target, weight)


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, values.ndim))
    return (values * weight).sum(dims) / weight.sum(dims).clamp(min=1.0)


__all__ = ["focal_loss", "dice_loss", "bce_loss", "mask_loss"]
