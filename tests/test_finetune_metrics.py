"""Per-image metrics against hand-computed values (empty masks included) and the mask losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.losses import bce_loss, dice_loss, focal_loss, mask_loss
from samgeo_pipeline.finetune.metrics import Confusion, confusion, image_row, summarize


def masks(pred: list[list[int]], label: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(pred, bool), np.array(label, bool)


class TestConfusion:
    def test_hand_computed(self) -> None:
        pred, label = masks([[1, 1, 0], [1, 0, 0], [0, 0, 0]], [[1, 1, 1], [0, 0, 0], [0, 0, 0]])
        c = confusion(pred, label)
        assert c == Confusion(tp=2, fp=1, fn=1, tn=5)
        s = c.scores()
        assert s["iou"] == pytest.approx(2 / 4)
        assert s["f1"] == pytest.approx(4 / 6)
        assert s["precision"] == pytest.approx(2 / 3)
        assert s["recall"] == pytest.approx(2 / 3)

    def test_valid_pixels_only(self) -> None:
        pred, label = masks([[1, 1], [0, 0]], [[1, 0], [0, 1]])
        valid = np.array([[True, False], [True, False]])
        assert confusion(pred, label, valid) == Confusion(tp=1, fp=0, fn=0, tn=1)

    def test_torch_equals_numpy(self) -> None:
        rng = np.random.default_rng(0)
        pred, label, valid = (rng.random((3, 20, 30)) > 0.5).astype(bool)
        expected = confusion(pred, label, valid)
        assert confusion(torch.from_numpy(pred), torch.from_numpy(label), torch.from_numpy(valid)) == expected

    @pytest.mark.parametrize(
        ("pred", "label", "expected"),
        [
            ([[0, 0]], [[0, 0]], {"iou": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}),  # both empty
            ([[0, 0]], [[1, 0]], {"iou": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}),  # missed water
            ([[1, 0]], [[0, 0]], {"iou": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}),  # false water
            ([[1, 1]], [[1, 1]], {"iou": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}),
        ],
    )
    def test_empty_mask_convention(self, pred: list, label: list, expected: dict) -> None:
        assert confusion(*masks(pred, label)).scores() == expected


class TestSummary:
    def test_mean_median_pooled(self) -> None:
        rows = [
            image_row("a", Confusion(tp=2, fp=1, fn=1, tn=5)),  # IoU 0.5
            image_row("b", Confusion(tp=0, fp=0, fn=0, tn=9)),  # both empty: 1.0
            image_row("c", Confusion(tp=0, fp=0, fn=3, tn=6)),  # missed: 0.0
        ]
        s = summarize(rows)
        assert s["n"] == 3
        assert s["iou_mean"] == pytest.approx(0.5)
        assert s["iou_median"] == pytest.approx(0.5)
        assert s["precision_mean"] == pytest.approx((2 / 3 + 1 + 0) / 3)
        assert s["pooled"]["iou"] == pytest.approx(2 / (2 + 1 + 4))

    def test_empty_set(self) -> None:
        s = summarize([])
        assert s["n"] == 0 and s["iou_mean"] is None


class TestLosses:
    def test_focal_single_pixel(self) -> None:
        logits, target, weight = torch.tensor([0.0]).view(1, 1, 1, 1), torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
        # p = 0.5: ce = ln 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25
        assert focal_loss(logits, target, weight, 0.25, 2.0).item() == pytest.approx(math.log(2) * 0.25 * 0.25)

    def test_dice_perfect_and_empty(self) -> None:
        target = torch.zeros(1, 1, 4, 4)
        target[..., :2, :] = 1
        weight = torch.ones_like(target)
        perfect = (target * 2 - 1) * 50
        assert dice_loss(perfect, target, weight).item() == pytest.approx(0.0, abs=1e-6)
        assert dice_loss(torch.full_like(target, -50.0), torch.zeros_like(target), weight).item() == pytest.approx(0.0, abs=1e-6)

    def test_zero_weight_pixels_do_not_count(self) -> None:
        target = torch.zeros(1, 1, 2, 2)
        weight = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
        logits = torch.tensor([[-5.0, -5.0], [100.0, 100.0]]).view(1, 1, 2, 2)
        assert bce_loss(logits, target, weight).item() == pytest.approx(math.log1p(math.exp(-5.0)), rel=1e-5)

    def test_focal_dice_weighting(self) -> None:
        config = FinetuneConfig()
        logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        target = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
        weight = torch.ones_like(target)
        expected = 20 * focal_loss(logits, target, weight) + dice_loss(logits, target, weight)
        torch.testing.assert_close(mask_loss(logits, target, weight, config), expected)
        assert mask_loss(logits, target, weight, FinetuneConfig(loss="bce")).shape == (2,)
