"""The RGB rule (:mod:`samgeo_pipeline.water.rgb_rule`): the edge of the darkest mode of the grey level."""

from __future__ import annotations

import numpy as np

from samgeo_pipeline.water.rgb_rule import darkest_mode_edge
from tests.water.test_index_rule import binned


class TestDarkestModeEdge:
    """Exact edges on hand-built histograms (32 unit bins; 40 extra values in the first and last)."""

    def test_stops_where_the_mode_falls_below_its_tail(self) -> None:
        counts = [10] * 32
        counts[3:8] = [50, 150, 300, 150, 50]  # smoothed top 178 at bin 5; tail limit 17.8
        counts[20:27] = [100] * 7
        assert darkest_mode_edge(binned(counts, 32)) == 9.0  # smoothed bin 9 is 14.4 < 17.8

    def test_stops_at_a_valley(self) -> None:
        counts = [10] * 32
        counts[3:14] = [50, 150, 300, 150, 100, 90, 120, 200, 300, 200, 100]
        assert darkest_mode_edge(binned(counts, 32)) == 9.0  # smoothed 133, 118, then 149: rising

    def test_minor_dark_mode_is_skipped(self) -> None:
        counts = [0] * 32
        counts[15:20] = [100, 300, 500, 300, 100]  # smoothed top 322 at bin 17
        counts[2:5] = [80, 160, 80]  # smoothed 91 >= 20 % of 322: a major mode, the darkest
        assert darkest_mode_edge(binned(counts, 32)) == 6.0  # smoothed bin 6: 80/9 < 9.1
        counts[2:5] = [40, 80, 40]  # smoothed 47 < 64: minor, skipped
        assert darkest_mode_edge(binned(counts, 32)) == 21.0

    def test_few_or_equal_values(self) -> None:
        assert darkest_mode_edge(np.arange(99.0)) is None
        assert darkest_mode_edge(np.full(100, 3.0)) == 3.0
