"""SAM's prompted decoder without padding (:mod:`samgeo_pipeline.sam.decode`): rows per component, rows grouped by
shape, outputs back in row order, rows merged per component. A stub decoder stands in for SAM; SAM itself is
decoded in ``tests/sam/test_pixels.py`` and ``tests/finetune/test_decode.py``."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from samgeo_pipeline.sam.decode import RowBatch, component_logits, decode_rows, merge_rows, prompt_rows
from samgeo_pipeline.water.prompts import ComponentPrompt


def points(xy: list[tuple[float, float]], labels: list[int]) -> ComponentPrompt:
    return ComponentPrompt(np.asarray(xy, np.float32).reshape(-1, 2), np.asarray(labels, np.int64), None, 10)


def box(xyxy: tuple[float, float, float, float]) -> ComponentPrompt:
    return ComponentPrompt(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), np.asarray(xyxy, np.float32), 10)


PROMPTS = [points([(10, 20), (30, 40), (50, 60)], [1, 1, 0]), points([], []), box((4, 8, 12, 16)), points([(2, 2)], [1])]


def test_rows_per_merge_scaled_to_the_input_frame() -> None:
    joint = prompt_rows(PROMPTS, "joint", (100, 50), (200, 100))  # twice the tile
    assert joint.component.tolist() == [0, 1, 2]  # the component without a prompt is left out, the rest renumbered
    np.testing.assert_array_equal(joint.points[0], [[20, 40], [60, 80], [100, 120]])
    np.testing.assert_array_equal(joint.boxes[1], [8, 16, 24, 32])
    assert joint.points[1].shape == (0, 2) and joint.boxes[0] is None
    mean = prompt_rows(PROMPTS, "mean", (100, 50), (200, 100))
    assert mean.component.tolist() == [0, 0, 1, 2] and mean.n_components == 3  # a row per positive point
    assert [lab.tolist() for lab in mean.labels] == [[1, 0], [1, 0], [], [1]]  # each with the negatives
    np.testing.assert_array_equal(mean.points[1], [[60, 80], [100, 120]])
    assert [mean.key(i) for i in range(4)] == [(2, False), (2, False), (0, True), (1, False)]
    with pytest.raises(ValueError, match="point merge 'union': use one of joint, mean, best"):
        prompt_rows(PROMPTS, "union", (100, 50), (200, 100))


class StubDecoder(torch.nn.Module):
    """Answers each row with a constant mask: 1000 x image + the row's first x (a box row: its x0); IoU = -x."""

    def forward(self, multimask_output: bool, image_embeddings: torch.Tensor, input_points=None, input_labels=None,
                input_boxes=None) -> SimpleNamespace:  # fmt: skip
        assert not multimask_output
        first_x = input_points[..., 0, 0] if input_points is not None else input_boxes[..., 0]  # (G, P)
        value = image_embeddings[:, 0, 0, 0][:, None] * 1000 + first_x
        masks = value[:, :, None, None, None].expand(-1, -1, 1, 4, 4)
        return SimpleNamespace(pred_masks=masks, iou_scores=-value[:, :, None])


def test_rows_grouped_by_shape_come_back_in_row_order() -> None:
    images = [prompt_rows(PROMPTS, "mean", (8, 8), (8, 8)), prompt_rows([], "mean", (8, 8), (8, 8)),
              prompt_rows([PROMPTS[3], PROMPTS[2], PROMPTS[3]], "mean", (8, 8), (8, 8))]  # fmt: skip
    batch = RowBatch.build(images)
    assert batch.counts == [3, 0, 3] and batch.component.tolist() == [0, 0, 1, 2, 3, 4, 5]
    assert sorted(len(g.slots) for g in batch.groups) == [2, 2, 3]  # (2 points), (box), (1 point): three calls
    one_point = next(g for g in batch.groups if g.points is not None and g.points.shape[2] == 1)
    assert one_point.images.tolist() == [0, 2] and not one_point.whole and one_point.points.shape[:2] == (2, 2)
    embeddings = torch.arange(3, dtype=torch.float32)[:, None, None, None].expand(3, 1, 1, 1)
    low_res, iou = decode_rows(StubDecoder(), embeddings, batch)
    expected = [10, 30, 4, 2, 2002, 2004, 2002]  # image 0's rows, then image 2's
    assert low_res[:, 0, 0].tolist() == expected and iou.tolist() == [-v for v in expected]


def test_rows_merge_into_their_components() -> None:
    batch = RowBatch.build([prompt_rows(PROMPTS, "mean", (8, 8), (8, 8))])  # rows of components 0, 0, 1, 2
    low_res = torch.tensor([1.0, 3.0, 5.0, 7.0])[:, None, None].expand(4, 2, 2)
    mean = merge_rows(low_res, torch.tensor([0.1, 0.9, 0.5, 0.5]), batch, "mean")
    assert mean[:, 0, 0].tolist() == [2.0, 5.0, 7.0]
    best = merge_rows(low_res, torch.tensor([0.1, 0.9, 0.5, 0.5]), batch, "best")
    assert best[:, 0, 0].tolist() == [3.0, 5.0, 7.0]
    tie = merge_rows(low_res, torch.tensor([0.5, 0.5, 0.5, 0.5]), batch, "best")
    assert tie[:, 0, 0].tolist() == [1.0, 5.0, 7.0]  # the first on ties


def test_a_batch_without_rows_gives_empty_components_at_the_mask_size() -> None:
    batch = RowBatch.build([prompt_rows([], "joint", (8, 8), (8, 8))] * 2)
    out = component_logits(StubDecoder(), torch.zeros(2, 4, 16, 16), batch, "joint")
    assert [tuple(t.shape) for t in out] == [(0, 64, 64), (0, 64, 64)]
