"""The segment flow's tasks (flows/segment_tasks.py), called as plain functions: the cache key, prepare,
the retry condition, the GPU slot, one hash and one reuse decision per input."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows import gpu_slots, segment_steps
from flows import segment_tasks as tasks
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import InputError, RasterReadError
from samgeo_pipeline.outputs.fingerprint import model_fingerprint

OPTIONS = {"model": "none", "tile_size": 256, "halo": 32}


def _config(**changes) -> SegmentConfig:
    return segment_steps.build_config({**OPTIONS, **changes})


class TestTasks:
    def test_segment_task_cache_key(self, tmp_path: Path) -> None:
        config = _config()
        prepared = {"sha256": "abc", "out_dir": str(tmp_path), "reusable": False}
        assert tasks._cache_key(None, {"prepared": prepared, "config": config}) is None  # nothing to reuse yet
        prepared["reusable"] = True
        assert tasks._cache_key(None, {"prepared": prepared, "config": config}).startswith("samgeo-segment-")
        assert tasks._cache_key(None, {"prepared": prepared, "config": config.merged({"overwrite": True})}) is None

    def test_prepare(self, two_scenes: Path, tmp_path: Path) -> None:
        prepared = tasks.prepare_image.fn(str(two_scenes / "alpha.tif"), str(tmp_path / "alpha"), _config())
        assert (prepared["width"], prepared["height"], prepared["bands"]) == (400, 300, 4)
        assert len(prepared["sha256"]) == 64 and prepared["reusable"] is False
        bad = tmp_path / "bad.tif"
        bad.write_text("not a raster")
        with pytest.raises((InputError, RasterReadError)):
            tasks.prepare_image.fn(str(bad), str(tmp_path / "bad"), _config())

    def test_retry_condition(self) -> None:
        def state(exc: BaseException) -> SimpleNamespace:
            def result():
                raise exc

            return SimpleNamespace(result=result)

        assert tasks._retry_on_io(None, None, state(ConnectionResetError("reset")))
        assert tasks._retry_on_io(None, None, state(RasterReadError("truncated")))
        assert not tasks._retry_on_io(None, None, state(InputError("no NIR band")))
        assert not tasks._retry_on_io(None, None, state(KeyError("x")))

    def test_segment_task_holds_the_gpu_slot(self, two_scenes: Path, tmp_path: Path, monkeypatch) -> None:
        from prefect.logging import disable_run_logger

        held: list[tuple[str, int]] = []

        @contextlib.contextmanager
        def fake_concurrency(name: str, occupy: int, **kwargs):
            held.append((name, occupy))
            yield

        monkeypatch.setattr(gpu_slots, "concurrency", fake_concurrency)
        config = _config()
        prepared = segment_steps.prepare(str(two_scenes / "beta.tif"), str(tmp_path / "beta"), config)
        with disable_run_logger():
            summary = tasks.segment_image.fn(prepared, config, "gpu")
            again = tasks.segment_image.fn(segment_steps.prepare(prepared["input"], prepared["out_dir"], config), config, "gpu")
        assert held == [("gpu", 1)]  # the reused run never asks for the GPU
        assert summary["status"] == "done" and again["status"] == "skipped"
        assert Path(summary["out_dir"], "mask.tif").is_file()
        assert json.loads(json.dumps(summary)) == summary  # JSON-able: paths, not arrays
        segment_steps.PREDICTORS.release("local")

    def test_each_input_is_hashed_once_and_reuse_decided_once(self, two_scenes: Path, tmp_path: Path,
                                                              monkeypatch) -> None:  # fmt: skip
        """prepare hashes the input and decides reuse; segment_image and RasterRun use that decision
        (before: two hashes and three reuse checks per image)."""
        import sys

        from prefect.logging import disable_run_logger

        calls: dict[str, list[str]] = {"file_sha256": [], "find_reusable": []}
        for module in list(sys.modules.values()):  # every module's binding of the two functions
            for name, seen in calls.items():
                real = getattr(module, name, None) if (getattr(module, "__name__", "") or "").startswith(
                    ("samgeo_pipeline", "flows")) else None
                if callable(real):
                    def counted(path, *args, _real=real, _seen=seen, **kwargs):
                        _seen.append(str(path))
                        return _real(path, *args, **kwargs)

                    monkeypatch.setattr(module, name, counted)
        config = _config()
        image = str(two_scenes / "beta.tif")
        with disable_run_logger():
            summary = tasks.segment_image.fn(segment_steps.prepare(image, str(tmp_path / "beta"), config), config)
            again = tasks.segment_image.fn(segment_steps.prepare(image, str(tmp_path / "beta"), config), config)
        assert (summary["status"], again["status"]) == ("done", "skipped")
        assert calls["file_sha256"].count(image) == 2  # once per run
        assert len(calls["find_reusable"]) == 2
        segment_steps.PREDICTORS.release("local")

    def test_images_take_the_gpu_one_at_a_time_for_their_tiles_only(self, two_scenes: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:  # fmt: skip
        """Two images in two threads: their tiles never overlap; the first one's finish (COG,
        polygons) overlaps the second one's tiles (it waits for them to start: were the GPU held for
        the whole image, that wait would time out)."""
        import threading
        import time

        from prefect.logging import disable_run_logger

        from samgeo_pipeline.run.image import RasterRun

        lock = threading.Lock()
        active, peak, order = [0], [0], []
        tiles_started = threading.Event()
        overlapped: list[bool] = []
        real_tiles, real_finish = RasterRun.tiles, RasterRun.finish

        def tiles(run):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                order.append(run.path.stem)
            if len(order) == 2:
                tiles_started.set()
            time.sleep(0.2)
            real_tiles(run)
            with lock:
                active[0] -= 1

        def finish(run):
            if run.path.stem == order[0]:
                overlapped.append(tiles_started.wait(20))
            return real_finish(run)

        monkeypatch.setattr(RasterRun, "tiles", tiles)
        monkeypatch.setattr(RasterRun, "finish", finish)
        config = _config()
        prepared = [segment_steps.prepare(str(two_scenes / f"{n}.tif"), str(tmp_path / n), config) for n in ("alpha", "beta")]
        summaries: list[dict] = []

        def run(p):
            with disable_run_logger():
                summaries.append(tasks.segment_image.fn(p, config))

        threads = [threading.Thread(target=run, args=(p,)) for p in prepared]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert peak[0] == 1 and sorted(order) == ["alpha", "beta"]
        assert overlapped == [True]
        assert sorted(s["status"] for s in summaries) == ["done", "done"]
        segment_steps.PREDICTORS.release("local")


def test_cache_key_depends_on_bytes_params_model_and_folder(tmp_path: Path) -> None:
    base = _config()
    key = tasks.segment_cache_key("abc", base, tmp_path)
    assert key == tasks.segment_cache_key("abc", base.merged({"batch_size": 9}), tmp_path)  # runtime-only
    assert key != tasks.segment_cache_key("abd", base, tmp_path)
    assert key != tasks.segment_cache_key("abc", base.merged({"halo": 16}), tmp_path)
    assert key != tasks.segment_cache_key("abc", base.merged({"model": "facebook/sam-vit-base"}), tmp_path)
    assert key != tasks.segment_cache_key("abc", base, tmp_path / "other")
    model_dir = tmp_path / "ckpt"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    first = model_fingerprint(str(model_dir))
    (model_dir / "model.safetensors").write_bytes(b"1")
    assert model_fingerprint(str(model_dir)) != first
