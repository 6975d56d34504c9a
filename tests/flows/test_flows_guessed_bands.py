"""A band order guessed from the band count (the watch flow's ``bands_source``) is never a silent
success: a warning in the manifest (and so the segment run's log), a column of the image's table
artifact, a section of the run summary, and a note on the watch scan's artifact line."""

from __future__ import annotations

from pathlib import Path

from flows.segment_report import image_row, run_markdown
from flows.segment_steps import build_config
from flows.watch import _guess_note
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.run.image import segment_raster

GUESS = "guessed from 4 bands"


def test_a_guess_is_a_warning_in_the_manifest_and_not_a_rule(tmp_path: Path) -> None:
    scene = write_demo_scene(tmp_path / "scene.tif", 60, 80, seed=3)
    config = build_config({"model": "none", "bands": "naip", "tile_size": 64, "halo": 8})
    guessed = segment_raster(scene, tmp_path / "guessed", config, bands_source=GUESS).manifest
    assert guessed.input.band_map_source == GUESS
    assert [w for w in guessed.warnings if "band order red=1,green=2,blue=3,nir=4 guessed from 4 bands" in w
            and "pin it with --bands or a watch rule" in w]
    ruled = segment_raster(scene, tmp_path / "ruled", config, bands_source="rule naip").manifest
    assert not [w for w in ruled.warnings if "band order" in w]


def test_a_guess_shows_in_the_table_row_the_summary_and_the_scan_artifact(tmp_path: Path) -> None:
    summary = {"input": "/in/landsat_1985.tif", "status": "done", "bands_source": GUESS, "links": {}}
    assert image_row(summary)["bands"] == GUESS
    assert "bands" not in image_row({**summary, "bands_source": "rule landsat"})
    text = run_markdown([summary], tmp_path, "http://x/")
    assert "## Band order guessed" in text and f"- `landsat_1985.tif`: {GUESS}" in text
    assert "Band order guessed" not in run_markdown([{**summary, "bands_source": "descriptions"}], tmp_path, "http://x/")
    assert "band order guessed from 4 bands" in _guess_note({"bands_source": GUESS})
    assert _guess_note({"bands_source": "rule naip"}) == ""
