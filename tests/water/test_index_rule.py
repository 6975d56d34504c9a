"""The index rules (:mod:`samgeo_pipeline.water.index_rule`): the threshold test without a division, the
bimodal split of the fitted index."""

from __future__ import annotations

import numpy as np
import pytest

from samgeo_pipeline.water.index_rule import bimodal_split, index_above
from samgeo_pipeline.water.spectral_tests import normalized_difference


@pytest.mark.parametrize("threshold", [-0.6, -0.05, 0.0, 0.12, 0.5, 0.95, 1.0, -1.5])
def test_index_above_equals_index_comparison(threshold: float) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(-500, 4000, (2, 200, 300)).astype(np.float32)  # negative reflectances too
    data[:, :10, :10] = 0  # zero sums
    data[1, 10:20, :10] = -data[0, 10:20, :10]
    index = normalized_difference(data[0], data[1])
    differ = index_above(data[0], data[1], threshold) != (index > threshold)
    assert np.all(np.abs(index[differ] - threshold) < 1e-6)  # only exact ties may differ


class TestBimodalSplit:
    def test_one_mode_has_no_split(self) -> None:
        values = np.random.default_rng(0).normal(0, 1, 20000)
        assert bimodal_split(values) is None  # Otsu alone would split it at ~0

    def test_two_modes_split_in_the_gap(self) -> None:
        rng = np.random.default_rng(0)
        values = np.concatenate([rng.normal(0, 1, 3000), rng.normal(12, 1, 17000)])
        split = bimodal_split(values)
        assert split is not None and 4 < split < 8  # the middle of the gap, not the edge of a mode


def binned(counts: list[int], top: float) -> np.ndarray:
    """Values at the centres of unit bins ``[i, i + 1)`` with ``counts[i]`` values each, plus 40
    values at 0 and at ``top``: the percentiles the functions below clip to are then 0 and ``top``,
    so their histogram of ``top`` bins has exactly these unit bins."""
    centres = [np.full(n, i + 0.5) for i, n in enumerate(counts)]
    return np.concatenate([*centres, np.zeros(40), np.full(40, float(top))])


class TestBimodalSplitExact:
    """Exact splits on hand-built histograms (8 unit bins)."""

    def test_middle_of_an_empty_gap(self) -> None:
        assert bimodal_split(binned([100, 300, 100, 0, 0, 0, 200, 200], 8), bins=8) == 4.0

    def test_deep_valley(self) -> None:
        assert bimodal_split(binned([100, 300, 100, 20, 0, 40, 200, 200], 8), bins=8) == 4.0

    @pytest.mark.parametrize("counts", [[100, 300, 250, 200, 250, 300, 100, 50], [100, 300, 150, 60, 150, 300, 100, 50]])
    def test_shallow_valley_has_no_split(self, counts: list[int]) -> None:
        """Smoothed valley 120 > 0.5 x the lower peak (183): one broad mode."""
        assert bimodal_split(binned(counts, 8), bins=8) is None

    def test_few_or_equal_values(self) -> None:
        assert bimodal_split(np.arange(99.0)) is None
        assert bimodal_split(np.full(200, 2.0)) is None
