"""One image's statistics stage: one decimated read gives the statistics, the quicklook's preview,
the zero collar's share and, when the run abstains, the rule's candidate water."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import RasterReadError
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.outputs.writers import MASK_NODATA
from samgeo_pipeline.run.image_stats import AbstainOptions, ImageStatsOptions, abstains, image_stats
from tests.scenes import options_only

CONFIG = SegmentConfig(stats_size=64, progress=False)
REASON = "water and land overlap (separability 0.12)"


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_demo_scene(tmp_path / "scene.tif", 100, 120)


def uncertain_stats(reason: str | None) -> SimpleNamespace:
    return SimpleNamespace(coarse=SimpleNamespace(uncertain=reason))


def test_abstains_only_when_uncertain_and_skipping_and_not_text() -> None:
    assert abstains(uncertain_stats(REASON), CONFIG)
    assert not abstains(uncertain_stats(None), CONFIG)
    assert not abstains(uncertain_stats(REASON), CONFIG.merged({"on_uncertain": "write"}))
    assert not abstains(uncertain_stats(REASON), CONFIG.merged({"prompt": "text", "text": "water"}))


def test_one_read_gives_the_preview_and_no_collar_on_a_tagged_nodata(scene: Path) -> None:
    info = inspect_raster(scene, warn=False)
    stats, preview, candidate, run_info, share = image_stats(scene, info, CONFIG)
    assert preview.shape == (53, 64, 3) and preview.dtype == np.uint8  # longest side: stats_size
    assert candidate is None and stats.coarse.uncertain is None  # the rule is sure on the demo scene
    assert share == 0.0 and run_info == info  # the file tags its nodata: no collar looked for


def test_an_untagged_zero_collar_becomes_the_runs_nodata(scene: Path) -> None:
    with rasterio.open(scene, "r+") as ds:
        ds.nodata = None  # the demo's nodata margin is now a collar of zeros the file does not tag
    info = inspect_raster(scene, warn=False)
    *_, run_info, share = image_stats(scene, info, CONFIG)
    assert 0.1 < share < 0.5 and (info.nodata, run_info.nodata) == (None, 0.0)
    *_, run_info, share = image_stats(scene, info, CONFIG.merged({"zero_collar": False}))
    assert share == 0.0 and run_info.nodata is None


def test_an_abstaining_run_gets_the_candidate_water(scene: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import samgeo_pipeline.water.radiometry as radiometry

    fitted = radiometry.fit_rule
    monkeypatch.setattr(radiometry, "fit_rule", lambda *a, **k: replace(fitted(*a, **k), uncertain=REASON))
    _, preview, candidate, _, _ = image_stats(scene, inspect_raster(scene, warn=False), CONFIG)
    assert candidate is not None and candidate.dtype == np.uint8 and candidate.shape == preview.shape[:2]
    assert set(np.unique(candidate)) == {0, 1, MASK_NODATA}  # water, land and the nodata margin


def test_the_statistics_stage_reads_only_its_options(scene: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import samgeo_pipeline.water.radiometry as radiometry

    fitted = radiometry.fit_rule
    monkeypatch.setattr(radiometry, "fit_rule", lambda *a, **k: replace(fitted(*a, **k), uncertain=REASON))
    info = inspect_raster(scene, warn=False)
    stats, preview, candidate, run_info, share = image_stats(scene, info, options_only(CONFIG, ImageStatsOptions))
    expected = image_stats(scene, info, CONFIG)  # abstaining: every option of the stage is read
    assert (stats, run_info, share) == (expected[0], *expected[3:]) and candidate is not None
    np.testing.assert_array_equal(preview, expected[1])
    np.testing.assert_array_equal(candidate, expected[2])
    assert abstains(stats, options_only(CONFIG, AbstainOptions))


def test_a_broken_file_is_a_one_line_read_error(scene: Path) -> None:
    info = inspect_raster(scene, warn=False)
    scene.write_bytes(scene.read_bytes()[:2000])  # truncated after it was inspected
    with pytest.raises(RasterReadError, match=rf"^{scene}: read failed while computing statistics \(") as caught:
        image_stats(scene, info, CONFIG)
    assert "\n" not in str(caught.value)
