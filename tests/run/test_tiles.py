"""One image's tile loop: every tile through the coarse mask and, with prompts, the model (a fake
predictor, tests/run/test_inference.py's), in batches; no work file left when a batch raises."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

import samgeo_pipeline.run.tiles as tile_loop
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import SamInferenceError
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.tiling import TileGrid, make_grid
from samgeo_pipeline.outputs.manifest import TileCounts
from samgeo_pipeline.run.image_stats import image_stats
from samgeo_pipeline.run.sink import TileSink
from samgeo_pipeline.run.tiles import partial_reason, segment_tiles
from tests.run.test_inference import CONFIG, FakePredictor
from tests.scenes import leftovers


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(tmp_path_factory.mktemp("tiles") / "scene.tif", 200, 300)


def run_tiles(
    scene: Path, out_dir: Path, config: SegmentConfig, predictor: FakePredictor | None
) -> tuple[TileSink, TileGrid]:
    """The sink :func:`segment_tiles` returns for ``scene``, and the grid it ran on."""
    info = inspect_raster(scene, warn=False)
    stats, _, _, info, _ = image_stats(scene, info, config)
    grid = make_grid(info, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    return segment_tiles(scene, out_dir, info, stats, grid, config, predictor), grid  # type: ignore[arg-type]


def failed(*tiles: tuple[int, int, str]) -> TileCounts:
    return TileCounts(failed=len(tiles), failed_tiles=[{"row": r, "col": c, "reason": why} for r, c, why in tiles])


def test_partial_reason_names_the_first_failed_tile_and_the_count() -> None:
    assert partial_reason(Path("a.tif"), TileCounts(total=6, sam=6)) is None
    one = partial_reason(Path("a.tif"), failed((1, 2, "out of memory even alone")))
    assert one is not None and one.startswith("a.tif: SAM failed on 1 tile(s), written as nodata: row 1 col 2 "
                                              "(out of memory even alone); lower --batch-size")
    three = partial_reason(Path("a.tif"), failed((0, 3, "oom"), (1, 1, "oom"), (2, 0, "oom")))
    assert three is not None and "3 tile(s), written as nodata: row 0 col 3 (oom) and 2 more (see manifest.json);" in three
    assert "\n" not in three


def test_without_a_model_every_valid_tile_is_coarse_only(scene: Path, tmp_path: Path) -> None:
    half_empty = tmp_path / "half.tif"
    shutil.copy(scene, half_empty)
    with rasterio.open(half_empty, "r+") as ds:  # the right half nodata (0): its tiles have no valid pixel
        ds.write(np.zeros((ds.count, ds.height, ds.width - 150), ds.dtypes[0]), window=Window(150, 0, ds.width - 150, ds.height))
    config = CONFIG.merged({"model": "none"})
    sink, grid = run_tiles(half_empty, tmp_path / "out", config, None)
    try:
        counts = sink.counts
        assert counts.total == len(grid) and counts.coarse_only > 0 and counts.skipped > 0 and counts.sam == 0
        assert counts.coarse_only + counts.skipped == counts.total
    finally:
        sink.remove_work()


def test_only_tiles_with_prompts_go_to_the_model(scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[list] = []
    run_batch = tile_loop.run_sam_batch

    def spy(predictor, batch, sink, config):
        sent.append(batch)
        run_batch(predictor, batch, sink, config)

    monkeypatch.setattr(tile_loop, "run_sam_batch", spy)
    sink, grid = run_tiles(scene, tmp_path / "out", CONFIG, FakePredictor())
    try:
        tiles = [prepared for batch in sent for prepared in batch]
        assert tiles and all(prepared.prompts and prepared.valid.any() for prepared in tiles)
        assert all(len(batch) <= CONFIG.batch_size for batch in sent)
        counts = sink.counts
        assert counts.sam == len(tiles) and counts.skipped == counts.total - len(tiles) > 0 and counts.coarse_only == 0
    finally:
        sink.remove_work()


def test_a_failing_batch_leaves_no_work_file(scene: Path, tmp_path: Path) -> None:
    predictor = FakePredictor(lambda rgbs: ValueError("broken decoder"))
    with pytest.raises(SamInferenceError, match="broken decoder"):
        run_tiles(scene, tmp_path / "out", CONFIG, predictor)
    assert predictor.batches and not leftovers(tmp_path)
    assert [p.name for p in (tmp_path / "out").iterdir()] == []
