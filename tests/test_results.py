"""What a run returns (:mod:`samgeo_pipeline.results`): fresh counts per result, the hint for an uncertain image."""

from __future__ import annotations

from pathlib import Path

import pytest

from samgeo_pipeline.results import SegmentResult, uncertain_hint


def test_each_result_counts_its_own_tiles() -> None:
    a, b = SegmentResult(Path("a.tif"), Path("out/a"), "done"), SegmentResult(Path("b.tif"), Path("out/b"), "done")
    a.tiles.failed_tiles.append({"row": 0, "col": 1, "reason": "out of memory"})
    a.seconds["total"] = 1.0
    assert b.tiles.failed_tiles == [] and b.seconds == {} and a.tiles is not b.tiles


@pytest.mark.parametrize(("method", "says", "not_said"), [
    ("rgb", "raise --rgb-max-water", "--threshold"),
    ("mndwi", "pass --threshold for MNDWI, or --reflectance-scale", "--rgb-max-water"),
])  # fmt: skip
def test_the_hint_names_the_options_that_apply(method: str, says: str, not_said: str) -> None:
    hint = uncertain_hint(method)
    assert says in hint and not_said not in hint
    assert hint.startswith("map NIR/SWIR with --bands") and hint.endswith("--on-uncertain write to keep the coarse mask anyway")
