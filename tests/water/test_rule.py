"""The rule's masks and components (:mod:`samgeo_pipeline.water.rule`): small components dropped, seeds, labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from samgeo_pipeline.water.rule import keep_components, label_components


class TestComponents:
    def test_min_area(self) -> None:
        water = np.zeros((40, 40), bool)
        water[2:5, 2:5] = True  # 9 px
        water[20:30, 20:30] = True  # 100 px
        water[10, 30] = True
        assert keep_components(water, water, 10).sum() == 100
        assert keep_components(water, water, 9).sum() == 109  # exactly min_area is kept
        assert keep_components(water, water, 1).sum() == 110

    def test_eight_connectivity(self) -> None:
        water = np.zeros((20, 20), bool)
        water[np.arange(10), np.arange(10)] = True  # a diagonal: one 8-connected component
        assert keep_components(water, water, 10).sum() == 10

    def test_seeds(self) -> None:
        water = np.zeros((30, 30), bool)
        water[2:10, 2:10] = True
        water[15:25, 15:25] = True
        seeds = np.zeros_like(water)
        seeds[20, 20] = True
        np.testing.assert_array_equal(keep_components(water, seeds, 1), water & (np.arange(30) >= 15)[:, None])

    def test_matches_skimage(self) -> None:
        from skimage.morphology import remove_small_objects

        mask = np.random.default_rng(3).random((300, 400)) < 0.3
        for min_area in (2, 5, 64):
            expected = remove_small_objects(mask, max_size=min_area - 1, connectivity=2)
            np.testing.assert_array_equal(keep_components(mask.copy(), mask, min_area), expected)

    def test_nothing_dropped_is_a_copy(self) -> None:
        water = np.zeros((10, 10), bool)
        water[2:5, 2:5] = True
        kept = keep_components(water, water, 1)
        np.testing.assert_array_equal(kept, water)
        kept[0, 0] = True
        assert not water[0, 0]

    @pytest.mark.parametrize("shape", [(1024, 1024), (301, 517), (1, 64), (64, 1)])
    def test_labels_numbered_as_scipy(self, shape) -> None:
        """Raster order of first pixels (prompts depend on it), on masks big enough for OpenCV's threads."""
        mask = np.random.default_rng(shape[0]).random(shape) < 0.5
        count, labels = label_components(mask[:, ::-1][:, ::-1])  # a non-contiguous view too
        expected, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        assert count == n + 1
        np.testing.assert_array_equal(labels, expected)
