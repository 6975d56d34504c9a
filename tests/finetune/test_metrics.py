"""Per-image metrics against hand-computed values (empty masks included) and the mask losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.losses import bce_loss, dice_loss, focal_loss, mask_loss
from samgeo_pipeline.finetune.metrics import (
    Confusion,
    confusion,
    image_row,
    pool_prompt_quality,
    prompt_quality,
    summarize,
)
from samgeo_pipeline.water.prompts import ComponentPrompt, component_prompts


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


def point_prompt(xy: list[tuple[float, float]], labels: list[int]) -> ComponentPrompt:
    """A prompt with points given as (x, y) = (col, row), as the pipeline's sampler stores them."""
    return ComponentPrompt(np.array(xy, np.float32).reshape(-1, 2), np.array(labels, np.int64), None, 0)


class TestPromptQuality:
    @staticmethod
    def label() -> np.ndarray:
        """20 rows x 60 cols: a 10x10 lake (100 px) at rows 0-9, cols 40-49, a 2x3 pond at rows 15-16, cols 5-7."""
        label = np.zeros((20, 60), bool)
        label[0:10, 40:50] = True
        label[15:17, 5:8] = True
        return label

    def test_hand_counted(self) -> None:
        prompts = [
            point_prompt([(45, 5), (41, 1), (10, 10), (30, 3), (41, 12)], [1, 1, 1, 0, 0]),  # (10, 10): land
            point_prompt([(6, 15), (45, 2)], [1, 0]),  # pond hit; a negative on the lake
        ]
        q = prompt_quality(prompts, self.label(), min_body_px=50)
        assert (q["positives"], q["positives_on_water"]) == (4, 3)
        assert (q["negatives"], q["negatives_on_land"]) == (3, 2)
        assert q["positives_on_water_fraction"] == pytest.approx(3 / 4)
        assert q["negatives_on_land_fraction"] == pytest.approx(2 / 3)
        assert (q["bodies"], q["bodies_prompted"], q["bodies_prompted_fraction"]) == (1, 1, 1.0)  # pond < 50 px: ignored
        assert q["points_ignored"] == 0 and q["min_body_px"] == 50

    def test_x_is_the_column(self) -> None:
        """On a non-square mask (x, y) = (col, row); the swapped order falls on land (or off the image)."""
        label = self.label()
        right = prompt_quality([point_prompt([(45, 5)], [1])], label, min_body_px=50)
        swapped = prompt_quality([point_prompt([(5, 45)], [1])], label, min_body_px=50)
        assert right["positives_on_water_fraction"] == 1.0 and right["bodies_prompted"] == 1
        assert swapped["positives"] == 0 and swapped["points_ignored"] == 1 and swapped["bodies_prompted"] == 0
        pond = prompt_quality([point_prompt([(6, 16)], [1])], label, min_body_px=5)  # col 6, row 16: the pond
        assert pond["positives_on_water"] == 1 and (pond["bodies"], pond["bodies_prompted"]) == (2, 1)
        transposed = prompt_quality([point_prompt([(16, 6)], [1])], label, min_body_px=5)
        assert transposed["positives_on_water"] == 0

    def test_missed_body_and_min_size(self) -> None:
        label = self.label()
        q = prompt_quality([point_prompt([(6, 15)], [1])], label, min_body_px=5)  # the pond (6 px) only
        assert (q["bodies"], q["bodies_prompted"]) == (2, 1) and q["bodies_prompted_fraction"] == 0.5
        q = prompt_quality([point_prompt([(6, 15)], [1])], label, min_body_px=6)  # more than 6 px: the lake only
        assert (q["bodies"], q["bodies_prompted"], q["bodies_prompted_fraction"]) == (1, 0, 0.0)

    def test_empty_and_invalid(self) -> None:
        label = self.label()
        q = prompt_quality([], label)
        assert q["positives"] == q["negatives"] == q["bodies"] == 0
        assert q["positives_on_water_fraction"] is None and q["negatives_on_land_fraction"] is None
        assert q["bodies_prompted_fraction"] is None
        valid = np.ones_like(label)
        valid[:, 44:] = False  # half the lake unknown; points there count neither way, padding is skipped
        q = prompt_quality([point_prompt([(45, 5), (41, 5), (0, 0), (-3, 2)], [1, 1, -10, 0])], label, 10, valid)
        assert (q["positives"], q["positives_on_water"], q["points_ignored"]) == (1, 1, 2)
        assert q["negatives"] == 0 and (q["bodies"], q["bodies_prompted"]) == (1, 1)  # 40 known lake pixels

    def test_sampled_prompts_and_pooling(self) -> None:
        """Points drawn by the pipeline's sampler from the label itself sit on water; pooling sums counts."""
        label = np.zeros((64, 96), bool)
        label[5:45, 10:30] = True
        label[20:60, 50:90] = True
        rng = np.random.default_rng(0)
        prompts = component_prompts(label, np.ones_like(label), kind="points", n_points=3, n_negatives=3, erosion=None,
                                    box_jitter=0, max_components=8, rng=rng)  # fmt: skip
        q = prompt_quality(prompts, label, min_body_px=700)
        assert q["positives"] >= 2 and q["positives_on_water_fraction"] == 1.0
        assert q["negatives"] > 0 and q["negatives_on_land_fraction"] == 1.0
        assert (q["bodies"], q["bodies_prompted"]) == (2, 2)
        half = prompt_quality(prompts[:1], label, min_body_px=700)
        pooled = pool_prompt_quality([q, half])
        assert pooled["positives"] == q["positives"] + half["positives"]
        assert pooled["bodies"] == 4 and pooled["bodies_prompted"] == 3
        assert pooled["bodies_prompted_fraction"] == pytest.approx(3 / 4) and pooled["min_body_px"] == 700

    def test_summarize_pools_prompt_records(self) -> None:
        label = self.label()
        rows = [
            {**image_row("a", Confusion(1, 0, 0, 1)), "prompts": prompt_quality([point_prompt([(45, 5)], [1])], label, 50)},
            {**image_row("b", Confusion(1, 0, 0, 1)), "prompts": prompt_quality([point_prompt([(0, 0)], [1])], label, 50)},
        ]
        s = summarize(rows)
        assert s["prompts"]["positives"] == 2 and s["prompts"]["positives_on_water_fraction"] == 0.5
        assert "prompts" not in summarize([image_row("c", Confusion(1, 0, 0, 1))])
