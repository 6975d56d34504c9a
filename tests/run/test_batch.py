"""Batches (``run.batch.segment_many``): the stages of consecutive images overlap, results stay in order."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

import samgeo_pipeline.run.batch as runner
import samgeo_pipeline.run.image as pipeline
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.io.folders import LOCK_NAME
from samgeo_pipeline.outputs.manifest import Manifest, Uncertain
from samgeo_pipeline.results import SegmentResult
from samgeo_pipeline.run.image import RasterRun, segment_raster

CONFIG = SegmentConfig(model="none", progress=False, tile_size=128, halo=16)
WAIT_S = 20.0  # the longest a stage waits for its neighbour (only reached when they do not overlap)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("batch")
    return [write_demo_scene(folder / f"scene{i}.tif", 200, 240, seed=i) for i in range(3)]


def test_the_model_stage_of_one_image_overlaps_the_others_stages(scenes: list[Path], tmp_path: Path,
                                                                 monkeypatch) -> None:  # fmt: skip
    """While image i's tiles run (on the caller's thread), image i-1 finishes and image i+1 prepares.

    Each stage waits (at most WAIT_S) for the stage it should overlap to start: image i-1's finish
    for image i's tiles, image i's tiles for image i+1's prepare. Run one after the other, every
    such wait would time out.
    """
    started = {(stage, i): threading.Event() for stage in ("prepare", "tiles", "finish") for i in range(3)}
    threads: dict[tuple[str, int], str] = {}
    overlapped: list[bool] = []
    real = {stage: getattr(RasterRun, stage) for stage in ("prepare", "tiles", "finish")}

    def staged(stage: str, waits_for: str | None):
        def run_stage(run: RasterRun):
            i = int(run.path.stem[-1])
            threads[stage, i] = threading.current_thread().name
            started[stage, i].set()
            if waits_for and i + 1 < 3:
                overlapped.append(started[waits_for, i + 1].wait(WAIT_S))
            return real[stage](run)

        return run_stage

    monkeypatch.setattr(RasterRun, "prepare", staged("prepare", None))
    monkeypatch.setattr(RasterRun, "tiles", staged("tiles", "prepare"))  # image i+1 prepares meanwhile
    monkeypatch.setattr(RasterRun, "finish", staged("finish", "tiles"))  # image i+1's tiles run meanwhile
    out_dirs = [tmp_path / p.stem for p in scenes]
    results = runner.segment_many(scenes, out_dirs, CONFIG, log=lambda message: None)

    assert overlapped == [True] * 4  # tiles 0 and 1 waited for prepare 1 and 2; finish 0 and 1 for tiles 1 and 2
    assert [r.out_dir for r in results] == out_dirs and [r.status for r in results] == ["done"] * 3
    caller = threading.current_thread().name
    assert all(threads["tiles", i] == caller for i in range(3))  # the model is used from one thread only
    assert all(threads[stage, i] != caller for stage in ("prepare", "finish") for i in range(3))


def test_a_batch_writes_what_one_image_at_a_time_writes(scenes: list[Path], tmp_path: Path) -> None:
    batch = runner.segment_many(scenes, [tmp_path / "batch" / p.stem for p in scenes], CONFIG, log=lambda m: None)
    for scene, result in zip(scenes, batch, strict=True):
        alone = segment_raster(scene, tmp_path / "alone" / scene.stem, CONFIG)
        for name in ("mask.tif", "quicklook.png"):
            assert (result.out_dir / name).read_bytes() == (alone.out_dir / name).read_bytes(), name
        assert (result.polygons, result.tiles, result.water_fraction) == (alone.polygons, alone.tiles,
                                                                          alone.water_fraction)  # fmt: skip
        assert set(result.seconds) == set(alone.seconds)
        seconds = result.seconds
        own = sum(v for k, v in seconds.items() if k not in ("total", "cog", "vectorize"))
        cog, polygons = seconds["cog"], seconds["vectorize"]  # they overlap: counted once
        assert own + max(cog, polygons) <= seconds["total"] <= own + cog + polygons


def test_a_finish_that_runs_out_of_memory_stops_the_batch_and_leaves_no_work_file(
    scenes: list[Path], tmp_path: Path, monkeypatch
) -> None:
    """The first image's polygons fail while the second image's tiles run: once they are done, the
    batch stops, the second image's work files are removed and the third image never starts."""
    failed = threading.Event()
    real_polygons, real_tiles = pipeline.write_polygons, RasterRun.tiles

    def write_polygons(mask: Path, *args, **kwargs):
        if mask.parent.name == "scene0":
            failed.set()
            raise MemoryError
        return real_polygons(mask, *args, **kwargs)

    def tiles(run: RasterRun) -> None:
        real_tiles(run)
        if run.path.stem == "scene1":
            assert failed.wait(WAIT_S)
            time.sleep(0.3)  # the failed future is marked done right after the stage returns

    monkeypatch.setattr(pipeline, "write_polygons", write_polygons)
    monkeypatch.setattr(RasterRun, "tiles", tiles)
    out_dirs = [tmp_path / p.stem for p in scenes]
    with pytest.raises(MemoryError):
        runner.segment_many(scenes, out_dirs, CONFIG, log=lambda m: None)
    # scene0's mask.tif, written before its polygons failed, is removed with it (issue 21: no output
    # without its manifest); scene1's work file removed, scene2 never started
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.name != LOCK_NAME] == []


def test_a_fine_tuned_models_preprocessing_is_applied_once_per_batch(scenes: list[Path], tmp_path: Path) -> None:
    """The checkpoint's preprocessing meets the options once (``checkpoint_config``), before the
    first image: one warning for an explicit composite that differs (not one per image), and every
    manifest records the checkpoint's percentiles; a re-run reuses every image."""
    import json
    import warnings

    from samgeo_pipeline.errors import SamgeoPipelineWarning
    from tests.tiny_sam import save_tiny_sam

    model = save_tiny_sam(tmp_path / "ckpt")
    (model / "samgeo_checkpoint.json").write_text(json.dumps(
        {"preprocessing": {"composite": ["nir", "red", "green"], "percentiles": [1.0, 99.0]}}))
    config = SegmentConfig(model=str(model), composite="red,green,blue", device="cpu", progress=False, tile_size=128,
                           halo=16)  # fmt: skip
    out_dirs = [tmp_path / "out" / p.stem for p in scenes[:2]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = runner.segment_many(scenes[:2], out_dirs, config, log=lambda m: None)
    differs = [w for w in caught if issubclass(w.category, SamgeoPipelineWarning) and "differs" in str(w.message)]
    assert len(differs) == 1
    assert [r.status for r in results] == ["done", "done"]
    assert all(r.manifest.parameters["percentiles"] == [1.0, 99.0] for r in results)
    assert all(r.manifest.parameters["composite"] == "red,green,blue" for r in results)  # the user's wins
    again = runner.segment_many(scenes[:2], out_dirs, config, log=lambda m: None)
    assert [r.status for r in again] == ["skipped", "skipped"]


def test_a_reused_images_row_and_log_line_come_from_its_manifest(scenes: list[Path], tmp_path: Path) -> None:
    """A reused (``skipped``) result carries the typed manifest of the run that made it: the summary
    row shows that run's tiles, coarse rule and water, and the log line its abstention hint."""
    from rich.console import Console

    first = segment_raster(scenes[0], tmp_path / "out", CONFIG)
    reused = segment_raster(scenes[0], tmp_path / "out", CONFIG)
    assert reused.status == "skipped" and isinstance(reused.manifest, Manifest)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(runner.summary_table([reused]))
    row = next(line for line in console.export_text().splitlines() if "scene0.tif" in line)
    t = first.tiles
    assert f"{t.sam}/{t.coarse_only}/{t.skipped}/{t.failed}" in row and t.total > 0
    assert runner.coarse_label(reused.manifest) in row and runner.coarse_label(reused.manifest) != "-"
    assert f"{100 * first.water_fraction:.2f}" in row and f" {first.polygons} " in row
    assert runner.coarse_label(None) == "-"
    logged: list[str] = []
    abstained = Manifest(uncertain=Uncertain(reason="poorly separated", what_to_do="pass --threshold"))
    runner._log_outcome(SegmentResult(scenes[0], tmp_path, "skipped", manifest=abstained,
                                      uncertain="poorly separated"), logged.append)  # fmt: skip
    assert logged[-1].endswith("poorly separated; pass --threshold")
