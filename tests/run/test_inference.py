"""SAM failing on tiles: only running out of memory is retried; any other error fails the image with its reason.

A fake predictor stands in for SAM (the retry logic is the pipeline's, not the model's): it marks
every valid pixel of a tile with prompts as water and raises what each test asks for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import samgeo_pipeline.run.batch as runner
from samgeo_pipeline.cli import main
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import SamInferenceError
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.tiling import make_grid
from samgeo_pipeline.run.image import segment_raster
from samgeo_pipeline.run.inference import InferenceOptions, is_out_of_memory, run_sam_batch
from samgeo_pipeline.run.prepare import prepared_tiles
from samgeo_pipeline.run.sink import TileSink
from samgeo_pipeline.sam.predictor import ModelSource
from samgeo_pipeline.water.radiometry import compute_stats
from tests.scenes import leftovers, options_only, read_mask

CONFIG = SegmentConfig(model="fake-sam", tile_size=96, halo=16, batch_size=4, progress=False)


def cpu_out_of_memory() -> RuntimeError:
    """What torch raises when the CPU allocator cannot allocate (a plain RuntimeError)."""
    try:
        torch.empty(1 << 62, dtype=torch.uint8)
    except RuntimeError as exc:
        return exc
    raise AssertionError("allocated 4 EiB")


class FakePredictor:
    """``embed`` / ``predict_masks`` as :class:`~samgeo_pipeline.sam.predictor.SamPredictor`'s; ``fail(rgbs)`` may
    return an exception to raise for a batch. ``batches`` records the size of every batch tried."""

    device = torch.device("cpu")
    autocast_dtype = None

    def __init__(self, fail: Callable[[list[np.ndarray]], BaseException | None] = lambda rgbs: None) -> None:
        self.fail = fail
        self.batches: list[int] = []

    def embed(self, images: list[np.ndarray]) -> tuple[list[np.ndarray], None]:
        self.batches.append(len(images))
        exc = self.fail(images)
        if exc is not None:
            raise exc
        return list(images), None

    def predict_masks(self, embeddings, prompts, tile_shape, resized, merge="joint", logits=False):
        return [np.ones(tile_shape, bool) for _ in prompts]


def first_tile_fails(make: Callable[[], BaseException]) -> Callable[[list[np.ndarray]], BaseException | None]:
    """A failure for every batch that holds the first tile ever embedded."""
    first: list[bytes] = []

    def fail(rgbs: list[np.ndarray]) -> BaseException | None:
        if not first:
            first.append(rgbs[0].tobytes())
        return make() if any(rgb.tobytes() == first[0] for rgb in rgbs) else None

    return fail


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(tmp_path_factory.mktemp("fail") / "scene.tif", 200, 300)


@pytest.fixture(scope="module")
def clean_mask(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = tmp_path_factory.mktemp("clean") / "out"
    predictor = FakePredictor()
    result = segment_raster(scene, out, CONFIG, predictor)  # type: ignore[arg-type]
    assert result.status == "done" and result.tiles.sam > 4 and max(predictor.batches) == 4
    return read_mask(out)


def test_out_of_memory_is_recognised() -> None:
    assert is_out_of_memory(cpu_out_of_memory())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("The size of tensor a (64) must match the size of tensor b (32)"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only torch's RuntimeErrors and MemoryError


@pytest.mark.parametrize(
    "error", [ValueError("broken decoder"), RuntimeError("The size of tensor a (64) must match (32)")], ids=["value", "runtime"]
)
def test_other_errors_fail_the_image_with_their_reason(scene: Path, tmp_path: Path, error: Exception) -> None:
    predictor = FakePredictor(lambda rgbs: error)
    reason = rf"scene.tif: SAM failed on the batch of tiles row \d+ col \d+.*{type(error).__name__}"
    with pytest.raises(SamInferenceError, match=reason):
        segment_raster(scene, tmp_path / "out", CONFIG, predictor)  # type: ignore[arg-type]
    assert predictor.batches == [4]  # not retried
    assert not leftovers(tmp_path) and not (tmp_path / "out" / "manifest.json").exists()


def test_other_error_on_one_tile_names_it_in_the_batch_result(
    scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = FakePredictor(first_tile_fails(lambda: ValueError("broken decoder")))
    monkeypatch.setattr(runner, "load_predictor", lambda config: (predictor, ModelSource("fake-sam", "local directory")))
    [result] = runner.segment_many([scene], [tmp_path / "out"], CONFIG.merged({"batch_size": 1}), log=lambda m: None)
    assert result.status == "failed"
    assert re.search(r"SAM failed on tile row \d+ col \d+ \(ValueError: broken decoder\); check the model", result.error)
    assert result.error.startswith(str(scene))


@pytest.mark.parametrize("make", [cpu_out_of_memory, lambda: torch.OutOfMemoryError("CUDA out of memory")], ids=["cpu", "cuda"])
def test_out_of_memory_retries_smaller_batches(
    scene: Path, tmp_path: Path, clean_mask: np.ndarray, make: Callable[[], BaseException]
) -> None:
    predictor = FakePredictor(lambda rgbs: make() if len(rgbs) > 1 else None)
    result = segment_raster(scene, tmp_path / "out", CONFIG, predictor)  # type: ignore[arg-type]
    assert result.status == "done" and result.error is None and result.tiles.failed == 0
    assert predictor.batches[:3] == [4, 2, 1]  # halved, then one tile at a time
    np.testing.assert_array_equal(read_mask(tmp_path / "out"), clean_mask)


def test_tile_out_of_memory_alone_is_listed_and_partial(scene: Path, tmp_path: Path, clean_mask: np.ndarray) -> None:
    predictor = FakePredictor(first_tile_fails(cpu_out_of_memory))
    result = segment_raster(scene, tmp_path / "out", CONFIG, predictor)  # type: ignore[arg-type]
    assert result.status == "partial" and result.tiles.failed == 1
    [failed] = result.tiles.failed_tiles
    assert failed["reason"].startswith("out of memory even alone (RuntimeError: [enforce fail")
    assert "can't allocate memory" in failed["reason"]
    assert f"SAM failed on 1 tile(s), written as nodata: row {failed['row']} col {failed['col']}" in result.error
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "partial" and manifest["tiles"]["failed_tiles"] == [failed]
    mask = read_mask(tmp_path / "out")
    info = inspect_raster(scene)
    [tile] = [t for t in make_grid(info, CONFIG) if (t.row, t.col) == (failed["row"], failed["col"])]
    core = tile.core_window(info.height, info.width).toslices()
    assert np.all(mask[core] == 255)
    outside = np.ones(mask.shape, bool)
    outside[core] = False
    np.testing.assert_array_equal(mask[outside], clean_mask[outside])


@pytest.mark.parametrize("changes", [{"probability": True}, {"prompt": "text", "text": "water,lake"}], ids=["points", "text"])
def test_a_batch_reads_only_its_options(scene: Path, tmp_path: Path, changes: dict[str, object]) -> None:
    config = CONFIG.merged(changes)
    info = inspect_raster(scene)
    with rasterio.open(scene) as ds:
        stats = compute_stats(ds, info, config)
    batch = list(prepared_tiles(info, stats, make_grid(info, config), config))[:3]
    predictor, sink = FakeTextPredictor(), TileSink(info, config, tmp_path)
    run_sam_batch(predictor, batch, sink, options_only(config, InferenceOptions))  # type: ignore[arg-type]
    assert sink.counts.sam == 3 and predictor.batches == [3]
    assert predictor.asked == ([(("water", "lake"), 0.5)] if config.prompt == "text" else [])
    sink.close()
    sink.remove_work()


class FakeTextPredictor(FakePredictor):
    """:class:`FakePredictor` that also answers text prompts (one instance: the whole tile), recording what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[tuple[str, ...], float]] = []

    def predict_text(self, embeddings, phrases, threshold, tile_shape):
        self.asked.append((phrases, threshold))
        return [np.ones((1, *tile_shape), bool) for _ in embeddings]


def test_partial_result_exit_code(scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    predictor = FakePredictor(first_tile_fails(cpu_out_of_memory))
    monkeypatch.setattr(runner, "load_predictor", lambda config: (predictor, ModelSource("fake-sam", "local directory")))
    code = main(["segment", str(scene), "--out", str(tmp_path / "out"), "--model", "fake-sam", "--tile-size", "96",
                 "--halo", "16", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "partial" in err and "SAM failed on 1 tile(s)" in err
