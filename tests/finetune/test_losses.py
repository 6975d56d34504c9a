"""The mask losses (:mod:`samgeo_pipeline.finetune.losses`): per image, then over the batch; weights; dtype.

Hand-computed single-pixel values are in ``tests/finetune/test_metrics.py::TestLosses``.
"""

from __future__ import annotations

import math

import pytest
import torch

from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.losses import bce_loss, dice_loss, focal_loss, mask_loss


def test_each_image_is_averaged_over_its_own_pixels() -> None:
    """A large image does not outweigh a small one: image 1 has 4 weighted pixels, image 2 one."""
    logits = torch.zeros(2, 1, 2, 2)
    logits[1] = 2.0
    target = torch.ones(2, 1, 2, 2)
    weight = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    torch.testing.assert_close(bce_loss(logits, target, weight), torch.tensor([math.log(2), math.log1p(math.exp(-2))]))
    assert bce_loss(logits, target, torch.zeros_like(weight)).tolist() == [0.0, 0.0]  # nothing weighted: 0, not NaN


def test_focal_alpha_weighs_the_classes_and_a_negative_alpha_none() -> None:
    logits, weight = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    water, land = torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    base = math.log(2) * 0.5**2
    assert focal_loss(logits, water, weight, 0.25).item() == pytest.approx(0.25 * base)
    assert focal_loss(logits, land, weight, 0.25).item() == pytest.approx(0.75 * base)
    assert focal_loss(logits, land, weight, -1.0).item() == pytest.approx(base)
    assert focal_loss(torch.full((1, 1, 1, 1), 8.0), water, weight).item() < 1e-9  # an easy pixel counts ~nothing


def test_dice_counts_weighted_pixels_only() -> None:
    target = torch.tensor([[[[1.0, 0.0]]]])
    right = torch.tensor([[[[50.0, -50.0]]]])
    assert dice_loss(right, target, torch.ones_like(target)).item() == pytest.approx(0.0, abs=1e-6)
    wrong_where_ignored = torch.tensor([[[[50.0, 50.0]]]])
    assert dice_loss(wrong_where_ignored, target, torch.tensor([[[[1.0, 0.0]]]])).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(wrong_where_ignored, target, torch.ones_like(target)).item() == pytest.approx(1 - 3 / 4, abs=1e-6)


def test_the_loss_is_float32_under_bfloat16_logits() -> None:
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    weight = torch.ones_like(target)
    config = FinetuneConfig()
    low = mask_loss(logits.bfloat16(), target, weight, config)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, mask_loss(logits.bfloat16().float(), target, weight, config))
