"""Training samples (:mod:`samgeo_pipeline.finetune.samples`): packed masks, the target in SAM's mask frame,
prompts from the label or the coarse mask, batches of unpadded rows."""

from __future__ import annotations

import numpy as np
import pytest

from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.samples import collate, lowres_target, pack, prepare_sample, unpack
from samgeo_pipeline.finetune.sources import Sample
from samgeo_pipeline.sam.decode import prompt_rows
from samgeo_pipeline.water.prompts import ComponentPrompt


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (17, 9), (64, 64)])
def test_pack_round_trip(shape: tuple[int, int]) -> None:
    mask = np.random.default_rng(sum(shape)).random(shape) < 0.5
    packed = pack(mask)
    assert packed.dtype == np.uint8 and packed.size == -(-mask.size // 8)
    np.testing.assert_array_equal(unpack(packed, shape), mask)


def test_target_and_weight_cover_the_image_not_the_padding() -> None:
    """A 100 x 50 image fills the left half of SAM's square input, so the left half of its mask frame."""
    label = np.zeros((100, 50), bool)
    label[:50] = True  # the top half is water
    valid = np.ones((100, 50), bool)
    valid[:, :10] = False  # a nodata strip: a fifth of the width
    target, weight = lowres_target(label, valid, (1024, 512), 1024, 256)
    assert target.shape == weight.shape == (256, 256) and target.dtype == np.float32
    assert target[:128, :128].all() and not target[128:].any() and not target[:, 128:].any()
    assert not weight[:, :25].any() and weight[:, 26:128].all() and not weight[:, 128:].any()
    wide = np.ones((50, 100), bool)
    _, weight = lowres_target(wide, wide, (512, 1024), 1024, 256)
    assert weight[:128].all() and not weight[128:].any()


def test_prompts_come_from_the_label_or_the_coarse_mask() -> None:
    label = np.zeros((32, 32), bool)
    label[4:12, 4:12] = True
    sample = Sample("a", np.zeros((32, 32, 3), np.uint8), label, np.ones((32, 32), bool), np.zeros((32, 32), bool))
    from_label = prepare_sample(sample, 7, FinetuneConfig(), 1024, 256)
    assert (from_label.name, from_label.source_index, from_label.shape, from_label.resized) == ("a", 7, (32, 32), (1024, 1024))
    assert from_label.has_prompts and from_label.prompt_mask is None
    from_coarse = prepare_sample(sample, 7, FinetuneConfig(prompt_source="coarse"), 1024, 256)
    assert not from_coarse.has_prompts and not unpack(from_coarse.prompt_mask, (32, 32)).any()
    np.testing.assert_array_equal(unpack(from_coarse.label, (32, 32)), label)


def test_collate_stacks_targets_and_groups_rows() -> None:
    prompt = ComponentPrompt(np.array([[3.0, 4.0]], np.float32), np.array([1]), None, 5)
    items = [{"position": p, "rows": prompt_rows([prompt] * p, "joint", (8, 8), (8, 8)), "shape": (8, 8), "resized": (8, 8),
              "target": np.full((4, 4), p, np.float32), "weight": np.ones((4, 4), np.float32)} for p in (2, 0, 1)]  # fmt: skip
    batch = collate(items)
    assert batch.positions == [2, 0, 1] and batch.has_prompts == [True, False, True]
    assert tuple(batch.target.shape) == (3, 1, 4, 4) and batch.target[:, 0, 0, 0].tolist() == [2.0, 0.0, 1.0]
    assert batch.rows.counts == [2, 0, 1] and batch.rgb is None and batch.label is None
