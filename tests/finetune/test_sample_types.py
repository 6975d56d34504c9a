"""Samples and their sources (:mod:`samgeo_pipeline.finetune.sample_types`): subsets and concatenations by
index, labels with an ignore value, an all-invalid sample. The real sources are in ``tests/finetune/test_sources.py``."""

from __future__ import annotations

import numpy as np
import pytest

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.finetune.sample_types import ConcatSource, Sample, SampleSource, SubsetSource, label_masks, make_sample


class Named(SampleSource):
    """Samples named ``prefix0``, ``prefix1``, ...; ``load`` returns an empty sample of that name."""

    def __init__(self, prefix: str, n: int) -> None:
        self.names = [f"{prefix}{i}" for i in range(n)]
        self.band_names, self.composite, self.description = ("red", "green", "blue"), ("red", "green", "blue"), prefix

    def load(self, index: int) -> Sample:
        empty = np.zeros((2, 2), bool)
        return Sample(self.names[index], np.zeros((2, 2, 3), np.uint8), empty, empty, empty)


def test_subsets_and_concatenations_load_by_their_own_index() -> None:
    a, b = Named("a", 3), Named("b", 2)
    both = ConcatSource([a, SubsetSource(b, [1, 0], "validation")])
    assert both.names == ["a0", "a1", "a2", "b1", "b0"] and len(both) == 5
    assert [both.load(i).name for i in range(5)] == both.names
    assert both.description == "a + b [validation: 2 of 2]"
    with pytest.raises(IndexError):
        both.load(5)


def test_label_values_water_and_unknown() -> None:
    raw = np.array([[0, 1, 2], [255, 0, 3]], np.uint8)
    water, known = label_masks(raw, 255)
    np.testing.assert_array_equal(water, [[False, True, True], [False, False, True]])
    np.testing.assert_array_equal(known, [[True, True, True], [False, True, True]])
    water, known = label_masks(np.dstack([raw, np.zeros_like(raw)]), None)  # a (rows, cols, k) label: its first channel
    assert known.all() and water[1, 0]


def test_a_sample_without_valid_pixels_is_empty_and_a_label_outside_valid_is_dropped() -> None:
    data = np.full((3, 8, 8), 100.0, np.float32)
    config = SegmentConfig(model="none", bands="red,green,blue")
    empty = make_sample("x", data, np.zeros((8, 8), bool), np.ones((8, 8), bool), ("red", "green", "blue"), config)
    assert not empty.label.any() and not empty.valid.any() and empty.rgb.shape == (8, 8, 3)
    valid = np.ones((8, 8), bool)
    valid[:, :2] = False
    data[:, 4:, :] = 10.0  # dark: water for the RGB rule
    sample = make_sample("y", data, valid, np.ones((8, 8), bool), ("red", "green", "blue"), config)
    np.testing.assert_array_equal(sample.label, valid)
    assert not sample.coarse[:, :2].any()
