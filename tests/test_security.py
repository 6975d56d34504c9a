"""Nothing lost, nothing escapes (issue 11): each test is the attack or the accident it prevents.

- a pickle in a run folder or a model folder never runs (``weights_only`` loads, safetensors only);
- no output lands outside ``--out`` (``...tif``, ``..tif``, a link in the output root);
- a header cannot make a run work for hours or fill the disk (pixel, tile and free-disk limits,
  checked before any read);
- one bad file never stops a batch, and one input's outputs never silently replace another's;
- a run of the whole bad-input set leaves every input and every folder outside ``--out`` as it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine

from samgeo_pipeline.cli import main
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import (
    CheckpointError,
    ConfigError,
    ModelUnavailableError,
    OutputWriteError,
    SizeLimitError,
)
from samgeo_pipeline.io.folders import LOCK_NAME
from samgeo_pipeline.io.paths import printable
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.run.image import segment_raster
from tests.scenes import leftovers

FAST = ["--model", "none", "--no-progress"]
#: What a run writes straight into --out: the STAC catalog of the root and its lock.
ROOT_FILES = ("catalog.json", ".samgeo-catalog.lock")


def segment(*args: object) -> int:
    return main(["segment", *map(str, args), *FAST])


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


class Payload:
    """Pickles to a call that creates ``marker``: what a malicious checkpoint or weights file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def snapshot(root: Path, skip: Path) -> dict[str, tuple[bool, int, int]]:
    """``relative path -> (is_dir, size, mtime_ns)`` of everything under ``root`` but ``skip``."""
    found = {}
    for path in [root, *root.rglob("*")]:
        if path == skip or skip in path.parents:
            continue
        stat = path.lstat()
        found[str(path.relative_to(root))] = (path.is_dir(), 0 if path.is_dir() else stat.st_size, stat.st_mtime_ns)
    return found


def huge_vrt(path: Path, source: Path, size: int = 200_000) -> Path:
    """A ~1 KB VRT that claims ``size`` x ``size`` pixels, stretched from the small ``source``."""
    with rasterio.open(source) as ds:
        width, height, count = ds.width, ds.height, ds.count
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>{b}</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{size}" ySize="{size}"/></SimpleSource></VRTRasterBand>'
        for b in range(1, count + 1)
    )
    path.write_text(
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>500000,1,0,5600000,0,-1</GeoTransform>{bands}</VRTDataset>"
    )
    return path


def sparse_tiff(path: Path, size: int = 1_000_000) -> Path:
    """A sparse GeoTIFF of < 1 MB claiming ``size`` x ``size`` pixels (no block written)."""
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=4, dtype="uint8", tiled=True,
        blockxsize=4096, blockysize=4096, sparse_ok=True, BIGTIFF="YES", crs="EPSG:32633",
        transform=Affine(1, 0, 500000, 0, -1, 5600000),
    ):  # fmt: skip
        pass
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 100 x 120 demo scene (read only)."""
    return write_demo_scene(tmp_path_factory.mktemp("scene") / "scene.tif", 100, 120)


# --------------------------------------------------------------------------- pickles


class TestPickles:
    def test_the_payload_is_live(self, tmp_path: Path) -> None:
        """Control: unpickled the usual way, the payload does run (so the tests below mean something)."""
        marker = tmp_path / "PWNED"
        pickle.loads(pickle.dumps(Payload(marker)))
        assert marker.exists()

    def _run_with_poisoned_state(self, tmp_path: Path) -> tuple[Path, Path]:
        from samgeo_pipeline.finetune.checkpoint import TRAINING_STATE
        from samgeo_pipeline.finetune.config import FinetuneConfig
        from samgeo_pipeline.sam.predictor import CHECKPOINT_META

        run, marker = tmp_path / "run", tmp_path / "PWNED"
        (run / "last").mkdir(parents=True)
        config = FinetuneConfig(data=str(tmp_path / "chips"), out=str(run))
        (run / "last" / CHECKPOINT_META).write_text(json.dumps({"config": config.to_dict()}))
        state = {"epoch": 1, "optimizer": Payload(marker), "scheduler": {}, "rng": {}}
        torch.save(state, run / "last" / TRAINING_STATE)
        return run, marker

    def test_resume_does_not_run_a_pickle_in_the_run_folder(self, tmp_path: Path, capsys) -> None:
        run, marker = self._run_with_poisoned_state(tmp_path)
        assert main(["finetune", "--out", str(run), "--resume", "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert not marker.exists()
        assert len(error_lines(err)) == 1 and "Traceback" not in err
        assert "training_state.pt: not a training state that can be loaded safely" in err

    def test_load_training_state_raises_one_line(self, tmp_path: Path) -> None:
        from samgeo_pipeline.finetune.checkpoint import load_training_state, stored_config

        run, marker = self._run_with_poisoned_state(tmp_path)
        config = stored_config(run)
        with pytest.raises(CheckpointError, match=r"Unsupported global: GLOBAL (builtins\.)?exec") as caught:
            load_training_state(run, config)
        assert "\n" not in str(caught.value) and not marker.exists()

    def test_a_real_training_state_still_resumes(self, tmp_path: Path) -> None:
        """The allow-list is enough for what training writes: optimizer, scheduler, RNG states (NumPy's too)."""
        from samgeo_pipeline.finetune.checkpoint import load_state_file, restore_rng, rng_states

        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
        model(torch.ones(2, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
        np.random.seed(3)
        state = {"epoch": 2, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": None,
                 "history": [{"epoch": 1, "train_loss": 0.5, "val": None}], "best": {"score": 0.4, "epoch": 1},
                 "rng": rng_states()}  # fmt: skip
        expected = np.random.rand(4)
        torch.save(state, tmp_path / "training_state.pt")
        loaded = load_state_file(tmp_path / "training_state.pt")
        restore_rng(loaded["rng"])
        np.testing.assert_array_equal(np.random.rand(4), expected)
        assert loaded["optimizer"]["state"][0]["step"] == state["optimizer"]["state"][0]["step"]

    def test_pickle_weights_in_a_model_folder_are_refused(self, scene: Path, tmp_path: Path, capsys) -> None:
        from samgeo_pipeline.sam.predictor import load_sam_model
        from tests.tiny_sam import save_tiny_sam

        model_dir = save_tiny_sam(tmp_path / "model")
        (model_dir / "model.safetensors").unlink()
        marker = tmp_path / "PWNED"
        torch.save({"vision_encoder.weight": Payload(marker)}, model_dir / "pytorch_model.bin")
        with pytest.raises(ModelUnavailableError, match=r"no model.safetensors") as caught:
            load_sam_model(str(model_dir))
        assert "\n" not in str(caught.value)
        code = main(["segment", str(scene), "--out", str(tmp_path / "out"), "--model", str(model_dir), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 1 and len(error_lines(err)) == 1 and "Traceback" not in err
        assert not marker.exists()

    def test_a_pickle_in_the_embedding_cache_is_a_miss(self, tmp_path: Path) -> None:
        from samgeo_pipeline.finetune.cache import EmbeddingCache

        cache = EmbeddingCache("disk", torch.device("cpu"), torch.float32, tmp_path / "cache", "fp")
        marker = tmp_path / "PWNED"
        cache.put("chip", torch.zeros(2, 4, 4))
        torch.save(Payload(marker), cache._path("chip"))
        assert cache.get("chip") is None and not marker.exists()


# --------------------------------------------------------------------------- output paths


class TestOutputPaths:
    def test_dot_named_inputs_write_only_inside_out(self, tmp_path: Path) -> None:
        inputs = tmp_path / "in"
        inputs.mkdir()
        dots = [write_demo_scene(inputs / "...tif", 100, 120), write_demo_scene(inputs / "..tif", 100, 120, seed=1)]
        out = tmp_path / "work" / "out"
        out.mkdir(parents=True)
        assert segment(*dots, "--out", out) == 0
        assert [p.name for p in (tmp_path / "work").iterdir()] == ["out"]  # nothing beside --out
        # nothing straight into --out but the STAC catalog of the root and its lock
        assert all(p.is_dir() for p in out.iterdir() if p.name not in ROOT_FILES), list(out.iterdir())
        assert sorted(p.name for p in out.iterdir()) == [".samgeo-catalog.lock", "_", "__", "catalog.json"]
        assert (out / "__" / "mask.tif").is_file() and (out / "_" / "mask.tif").is_file()


    def test_three_inputs_with_the_same_251_byte_stem(self, scene: Path, tmp_path: Path, capsys) -> None:
        """Issue 21: the hashed folder name of same-named inputs passed 255 bytes (OSError Errno 36):
        those inputs could never be processed. Names are capped in bytes, keeping them apart."""
        stem = "é" * 120 + "w" * 11  # 251 bytes in UTF-8: a 255-byte file name with .tif
        inputs = []
        for folder in "abc":
            (tmp_path / folder).mkdir()
            inputs.append(tmp_path / folder / f"{stem}.tif")
            shutil.copy(scene, inputs[-1])
        out = tmp_path / "out"
        assert segment(*inputs, "--out", out) == 0, capsys.readouterr().err
        folders = sorted(p for p in out.iterdir() if p.name not in ROOT_FILES)
        assert len(folders) == 3 and all((d / "manifest.json").is_file() for d in folders)
        assert all(len(os.fsencode(d.name)) <= 255 and d.name.startswith("é" * 100) for d in folders)


    def test_escape_sequences_in_names_are_printed_escaped(self, scene: Path, tmp_path: Path, capsys) -> None:
        """Issue 21: an ESC sequence in a file name was printed raw into the terminal summary table;
        the log lines and error messages print it escaped too."""
        (tmp_path / "in").mkdir()
        good, bad = tmp_path / "in" / "a\x1b[2Jclear.tif", tmp_path / "in" / "b\x1b]0;title\x07\u202e.tif"
        shutil.copy(scene, good)
        bad.write_bytes(b"")  # an empty file: an error line naming it
        assert segment(good, bad, "--out", tmp_path / "out") == 1
        err = capsys.readouterr().err
        assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err
        assert "a\\x1b[2Jclear.tif" in err  # the summary table
        assert "error: " in err and "b\\x1b]0;title\\x07\\u202e.tif: empty file" in err  # the error line
        assert printable("ok\tname\x9b\udcff") == "ok\\x09name\\x9b\\udcff"

    def test_a_link_in_the_output_root_is_not_followed(self, scene: Path, tmp_path: Path, capsys) -> None:
        elsewhere, out = tmp_path / "elsewhere", tmp_path / "out"
        elsewhere.mkdir()
        out.mkdir()
        (out / "scene").symlink_to(elsewhere, target_is_directory=True)
        assert segment(scene, "--out", out) == 1
        err = capsys.readouterr().err
        assert len(error_lines(err)) == 1 and "not inside the output root" in err
        assert list(elsewhere.iterdir()) == []


# --------------------------------------------------------------------------- size limits


class TestSizeLimits:
    def test_huge_vrt_is_refused_at_once(self, scene: Path, tmp_path: Path, capsys) -> None:
        vrt = huge_vrt(tmp_path / "huge.vrt", scene)
        assert vrt.stat().st_size < 2000
        out = tmp_path / "out"
        start = time.perf_counter()
        assert segment(vrt, "--out", out) == 1
        assert time.perf_counter() - start < 20
        err = capsys.readouterr().err
        lines = error_lines(err)
        assert len(lines) == 1 and "200000 x 200000 pixels" in lines[0] and "--max-pixels" in lines[0]
        assert not out.exists() or not any(out.rglob("*"))  # no work file, not even an empty one

    def test_sparse_tiff_statistics_never_start(self, tmp_path: Path, monkeypatch) -> None:
        import samgeo_pipeline.run.image_stats as image_stats

        def no_statistics(*args, **kwargs):
            raise AssertionError("the statistics read started")

        monkeypatch.setattr(image_stats, "read_decimated", no_statistics)
        path = sparse_tiff(tmp_path / "sparse.tif")
        assert path.stat().st_size < 2_000_000
        with pytest.raises(SizeLimitError, match=r"1000000 x 1000000 pixels .* --max-pixels"):
            segment_raster(path, tmp_path / "out" / "sparse", SegmentConfig(model="none", progress=False))
        assert not (tmp_path / "out").exists()

    def test_huge_tile_size_is_refused(self, scene: Path, tmp_path: Path, capsys) -> None:
        with pytest.raises(ConfigError, match=r"tile_size=100000: must be >= 32 and <= 8192"):
            SegmentConfig(tile_size=100000)
        assert segment(scene, "--out", tmp_path / "out", "--tile-size", "100000") == 1
        assert "<= 8192" in capsys.readouterr().err and not (tmp_path / "out").exists()

    def test_tiny_gsd_is_refused_before_planning_millions_of_tiles(self, scene: Path, tmp_path: Path) -> None:
        start = time.perf_counter()
        with pytest.raises(SizeLimitError, match=r"--gsd 1e-06 .* choose a coarser --gsd"):
            segment_raster(scene, tmp_path / "out", SegmentConfig(model="none", progress=False, gsd=1e-6))
        assert time.perf_counter() - start < 5 and not (tmp_path / "out").exists()

    @pytest.mark.parametrize("gsd", ["1e6", "3000", "1e300"])
    def test_coarse_gsd_is_refused_with_the_reason(self, gsd: str, scene: Path, tmp_path: Path, capsys) -> None:
        """Issue 21: --gsd 1e6 (a 1 x 1 working grid) silently gave 0 % water; the scene is 100 x 120
        pixels of 2 m, so at most 2 * 100 / 32 = 6.25 m leaves 32 working pixels on a side."""
        assert segment(scene, "--out", tmp_path / "out", "--gsd", gsd) == 1
        err = capsys.readouterr().err
        assert f"--gsd {float(gsd):g} makes a working grid of " in err
        assert "(the file's pixel is 2 m), too coarse to find water in; choose a --gsd of at most 6.25" in err
        assert not (tmp_path / "out").exists()
        assert segment(scene, "--out", tmp_path / "out", "--gsd", "6.25") == 0

    @pytest.mark.parametrize(("flag", "value"), [("--gsd", "nan"), ("--gsd", "inf"), ("--stats-size", "0"),
                                                 ("--threshold", "nan"), ("--simplify", "inf")])  # fmt: skip
    def test_nan_inf_zero_options_are_one_line_errors(self, flag: str, value: str, scene: Path, tmp_path: Path,
                                                      capsys) -> None:  # fmt: skip
        """Issue 21: --gsd nan raised a raw ValueError, the others silently gave 0 % water."""
        assert segment(scene, "--out", tmp_path / "out", flag, value) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {flag[2:].replace('-', '_')}={value}: must be ")
        assert not (tmp_path / "out").exists()

    def test_too_many_tiles_and_the_option_that_raises_the_limit(self, scene: Path, tmp_path: Path, capsys) -> None:
        small = ["--tile-size", "32", "--halo", "0", "--min-area", "0"]
        assert segment(scene, "--out", tmp_path / "out", *small, "--max-tiles", "10") == 1
        assert "exceed max_tiles=10" in capsys.readouterr().err  # 100 x 120 in 32-px tiles: 4 x 4
        assert segment(scene, "--out", tmp_path / "out", *small, "--max-tiles", "16") == 0

    def test_a_disk_too_small_for_the_work_files_is_refused(self, scene: Path, tmp_path: Path, monkeypatch) -> None:

        config = SegmentConfig(model="none", progress=False)
        assert segment_raster(scene, tmp_path / "done" / "scene", config).status == "done"
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
        with pytest.raises(SizeLimitError, match=r"work files need about .* GB free"):
            segment_raster(scene, tmp_path / "out" / "scene", config)
        assert not (tmp_path / "out").exists()
        assert segment_raster(scene, tmp_path / "done" / "scene", config).status == "skipped"  # writes nothing

    def test_a_legit_50k_raster_passes(self, scene: Path, tmp_path: Path, monkeypatch) -> None:
        import samgeo_pipeline.io.limits as limits

        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**13, 0, 10**13))
        info = dataclasses.replace(inspect_raster(scene), width=50_000, height=50_000)
        grid = limits.check_size(info, SegmentConfig())
        limits.check_free_disk(info, SegmentConfig(), tmp_path)
        assert len(grid) == grid.rows * grid.cols >= (50_000 // 1024) ** 2  # 1024-pixel tiles cover it

    def test_failed_work_file_creation_leaves_no_file(self, scene: Path, tmp_path: Path, monkeypatch) -> None:
        from rasterio.errors import RasterioIOError

        import samgeo_pipeline.outputs.writers as writers

        info = inspect_raster(scene)

        def refuse(*args, **kwargs):
            raise RasterioIOError("Free disk space available is 0 bytes")

        monkeypatch.setattr(writers.rasterio, "open", refuse)
        with pytest.raises(OutputWriteError, match=r"mask.tif: cannot create the work file"):
            writers.WindowedRasterWriter(info, tmp_path / "out" / "mask.tif", "uint8", 255)
        # not even a 0-byte hidden file (the folder lock aside)
        assert [p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name != LOCK_NAME] == []


# --------------------------------------------------------------------------- a full disk


class TestFullDisk:
    """Issue 21: a disk filling up after the estimate passed gave dozens of GDAL lines, then a misleading
    reason (``RasterioIOError: Read failed``, ``Failed to commit transaction``), and a ``mask.tif`` could
    remain without its manifest. Now: one line ``no space left on DEVICE while writing FILE``, exit 1,
    and no output without its manifest. ENOSPC is simulated where each writer meets it."""

    def check(self, scene: Path, out: Path, capsys, written: str) -> None:
        assert segment(scene, "--out", out) == 1
        errors = error_lines(capsys.readouterr().err)
        assert len(errors) == 1 and errors[0].startswith("error: no space left on /"), errors
        assert errors[0].endswith(f" while writing {out / 'scene' / written}; free some space or write to another --out")
        # neither outputs without a manifest nor temporary files
        assert [p for p in (out / "scene").iterdir() if p.name != LOCK_NAME] == []

    def test_enospc_while_writing_the_quicklook(self, scene: Path, tmp_path: Path, capsys, monkeypatch) -> None:
        """The last file before the manifest: mask.tif and water.gpkg are in place by then."""
        import errno

        from PIL import Image

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(Image.Image, "save", full)
        self.check(scene, tmp_path / "out", capsys, "quicklook.png")

    def test_a_gdal_failure_on_a_full_disk(self, scene: Path, tmp_path: Path, capsys, monkeypatch) -> None:
        """GDAL's COG copy fails with its own words; the disk has no space left: that is the reason given."""
        from rasterio.errors import RasterioIOError

        import samgeo_pipeline.io.atomic as atomic
        import samgeo_pipeline.outputs.writers as writers

        def copy(*args, **kwargs):
            raise RasterioIOError("TIFFAppendToStrip:Write error at scanline 2048")

        monkeypatch.setattr(writers.rasterio.shutil, "copy", copy)
        monkeypatch.setattr(atomic, "free_space", lambda folder: 4096)
        self.check(scene, tmp_path / "out", capsys, "mask.tif")

    def test_a_work_file_flush_that_failed_silently(self, scene: Path, tmp_path: Path, capsys, monkeypatch) -> None:
        """GDAL writes cached blocks from whichever thread evicts them and only prints a failure: the
        work file is then short, and the polygons read "Missing data for block 46". Its size is checked."""
        import samgeo_pipeline.io.atomic as atomic
        import samgeo_pipeline.outputs.writers as writers

        class ShortClose:  # the dataset, whose close leaves the file as a failed flush does
            def __init__(self, ds, path: Path) -> None:
                self._ds, self._path = ds, path

            def __getattr__(self, name: str):
                return getattr(self._ds, name)

            def close(self) -> None:
                self._ds.close()
                os.truncate(self._path, self._path.stat().st_size // 2)

        real_open = writers.rasterio.open

        def open_short(path, mode="r", **kwargs):
            ds = real_open(path, mode, **kwargs)
            return ShortClose(ds, Path(path)) if mode == "w" else ds

        monkeypatch.setattr(writers.rasterio, "open", open_short)
        monkeypatch.setattr(atomic, "free_space", lambda folder: 0)
        self.check(scene, tmp_path / "out", capsys, "mask.tif")

    def test_a_real_full_tmpfs(self, tmp_path: Path, capsys) -> None:
        """As reported: a 20 MB tmpfs as --out, a 4000 x 3000 input whose 12 MB work file passes the
        estimate, the disk filled up meanwhile. Needs root and mount (skipped elsewhere)."""
        import subprocess

        disk = tmp_path / "disk"
        disk.mkdir()
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)],
                                               capture_output=True).returncode != 0:  # fmt: skip
            pytest.skip("mounting a tmpfs needs root")
        try:
            scene = write_demo_scene(tmp_path / "in" / "scene.tif", 3000, 4000)
            (disk / "filler").write_bytes(bytes(shutil.disk_usage(disk).free - 12_120_000))  # 12.12 MB left
            out = disk / "out"
            assert segment(scene, "--out", out) == 1
            errors = error_lines(capsys.readouterr().err)
            assert errors == [f"error: no space left on {disk} (tmpfs) while writing {out / 'scene' / 'mask.tif'}; "
                              "free some space or write to another --out"]  # fmt: skip
            assert [p for p in (out / "scene").iterdir() if p.name != LOCK_NAME] == []
        finally:
            subprocess.run(["umount", str(disk)], check=True)


# --------------------------------------------------------------------------- a batch goes on


class TestBatchGoesOn:
    def test_newline_in_a_file_name(self, scene: Path, tmp_path: Path, capsys) -> None:
        odd = tmp_path / "in" / "a\nb.tif"
        odd.parent.mkdir()
        shutil.copy(scene, odd)
        out = tmp_path / "out"
        assert segment(odd, scene, "--out", out) == 0
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert (out / "a_b" / "manifest.json").is_file() and (out / "scene" / "manifest.json").is_file()

    @pytest.mark.parametrize("stage", ["prepare", "tiles", "finish"])
    @pytest.mark.parametrize("error", ["pyogrio", "cv2", "geos", "runtime", "key"])
    def test_whatever_a_bad_file_raises_the_next_one_runs(self, error: str, stage: str, scene: Path, tmp_path: Path,
                                                          monkeypatch) -> None:  # fmt: skip
        import cv2
        import pyogrio.errors
        import shapely.errors

        import samgeo_pipeline.run.batch as runner
        from samgeo_pipeline.run.image import RasterRun

        raised = {
            "pyogrio": pyogrio.errors.DataSourceError("sqlite3_open(...) failed"),
            "cv2": cv2.error("OpenCV(4) error: (-215:Assertion failed)"),
            "geos": shapely.errors.GEOSException("TopologyException: side location conflict"),
            "runtime": RuntimeError("bad\nsecond line"),
            "key": KeyError("band"),
        }[error]
        real = getattr(RasterRun, stage)

        def flaky(run):
            if run.path.name == "bad.tif":
                raise raised
            return real(run)

        monkeypatch.setattr(RasterRun, stage, flaky)
        bad = shutil.copy(scene, tmp_path / "bad.tif")
        logged: list[str] = []
        inputs = [scene, Path(bad), scene]
        out_dirs = [tmp_path / "o" / "first", tmp_path / "o" / "bad", tmp_path / "o" / "last"]
        results = runner.segment_many(inputs, out_dirs, SegmentConfig(model="none", progress=False), log=logged.append)
        assert [r.status for r in results] == ["done", "failed", "done"]
        assert [r.out_dir for r in results] == out_dirs  # in input order, whichever thread ran the stage
        assert results[1].error.startswith(f"{bad}: ") and "\n" not in results[1].error
        assert [m for m in logged if m.startswith("error:")] == [f"error: {results[1].error}"]
        assert (out_dirs[2] / "manifest.json").is_file()

    # one in each RasterRun stage
    @pytest.mark.parametrize("stage", ["image.image_stats", "tiles.prepared_tiles", "image.write_polygons"])
    @pytest.mark.parametrize("stop", [MemoryError, KeyboardInterrupt])
    def test_running_out_of_memory_or_an_interrupt_still_stops(self, stop, stage: str, scene: Path, tmp_path: Path,
                                                              monkeypatch) -> None:  # fmt: skip
        import importlib

        import samgeo_pipeline.run.batch as runner

        module, stage = stage.split(".")
        pipeline = importlib.import_module(f"samgeo_pipeline.run.{module}")
        real = getattr(pipeline, stage)

        def fail(path, *args, **kwargs):
            if "second" in str(path):  # the input (statistics), its info (tiles) or its mask (polygons)
                raise stop()
            return real(path, *args, **kwargs)

        monkeypatch.setattr(pipeline, stage, fail)
        names = ("first", "second", "third")
        inputs = [Path(shutil.copy(scene, tmp_path / f"{name}.tif")) for name in names]
        out_dirs = [tmp_path / "o" / name for name in names]
        with pytest.raises(stop):
            runner.segment_many(inputs, out_dirs, SegmentConfig(model="none", progress=False), log=print)
        # The images around the stopped one (finished in the background, or already under way when
        # the stop was seen) are whole or have no outputs at all; no work file is left anywhere.
        for out_dir in (out_dirs[0], out_dirs[2]):
            names = sorted(p.name for p in out_dir.glob("*") if p.name != LOCK_NAME) if out_dir.exists() else []
            assert names in ([], ["item.json", "manifest.json", "mask.tif", "quicklook.png", "water.gpkg"]), out_dir
        assert not (out_dirs[1] / "manifest.json").exists()
        assert [p.name for p in (tmp_path / "o").rglob(".*") if p.name != LOCK_NAME] == []


# --------------------------------------------------------------------------- one folder, one input


class TestFolderOwner:
    def test_two_runs_with_the_same_name_do_not_overwrite_each_other(self, tmp_path: Path, capsys) -> None:
        (tmp_path / "A").mkdir()
        (tmp_path / "B").mkdir()
        a = write_demo_scene(tmp_path / "A" / "scene.tif", 100, 120, seed=1)
        b = write_demo_scene(tmp_path / "B" / "scene.tif", 100, 120, seed=2)
        out = tmp_path / "out"
        assert segment(a, "--out", out) == 0
        stamp = (out / "scene" / "mask.tif").stat().st_mtime_ns
        capsys.readouterr()
        assert segment(b, "--out", out) == 1
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "holds the outputs of another input" in lines[0] and "--overwrite" in lines[0]
        assert (out / "scene" / "mask.tif").stat().st_mtime_ns == stamp
        assert json.loads((out / "scene" / "manifest.json").read_text())["input"]["source"] == str(a)
        assert segment(b, "--out", out, "--overwrite") == 0  # asked for: replaced
        assert json.loads((out / "scene" / "manifest.json").read_text())["input"]["source"] == str(b)

    def test_same_bytes_elsewhere_and_changed_bytes_in_place(self, tmp_path: Path, capsys) -> None:
        a = write_demo_scene(tmp_path / "A" / "scene.tif", 100, 120, seed=1)
        out = tmp_path / "out"
        assert segment(a, "--out", out) == 0
        (tmp_path / "C").mkdir()
        copy = shutil.copy(a, tmp_path / "C" / "scene.tif")
        assert segment(copy, "--out", out) == 0  # the same bytes: the same outputs, reused
        assert "skipped" in capsys.readouterr().err
        write_demo_scene(a, 100, 120, seed=5)  # the same input, changed: a re-run
        assert segment(a, "--out", out) == 0
        assert json.loads((out / "scene" / "manifest.json").read_text())["status"] == "done"


# --------------------------------------------------------------------------- the whole bad-input set


def test_the_whole_bad_input_set_touches_nothing_outside_out(tmp_path: Path, capsys, monkeypatch) -> None:
    """Every bad input of issue 11 in one CLI batch: every input file and every folder outside
    ``--out`` is left exactly as it was (paths, sizes, modification times), and the good file is done."""
    inputs, refs = tmp_path / "in", tmp_path / "refs"
    inputs.mkdir()
    refs.mkdir()
    small = write_demo_scene(refs / "small.tif", 40, 40)
    good = write_demo_scene(inputs / "good.tif", 100, 120)
    write_demo_scene(inputs / "...tif", 60, 80, seed=1)
    write_demo_scene(inputs / "..tif", 60, 80, seed=2)
    write_demo_scene(inputs / "new\nline.tif", 60, 80, seed=3)
    huge_vrt(inputs / "huge.vrt", small)
    sparse_tiff(inputs / "sparse.tif")
    (inputs / "empty.tif").touch()
    (inputs / "text.tif").write_text("not a raster\n" * 20)
    truncated = write_demo_scene(inputs / "truncated.tif", 300, 300, seed=4)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (inputs / "KEEP_ME.txt").write_text("the user's own file")
    namesake = write_demo_scene(tmp_path / "other" / "good.tif", 100, 120, seed=9)  # same name, other bytes
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    old = time.time() - 3600  # mtimes an hour ago, so any touch shows
    for path in [tmp_path, *tmp_path.rglob("*")]:
        os.utime(path, (old, old), follow_symlinks=False)
    before = snapshot(tmp_path, skip=out)

    start = time.perf_counter()
    code = main(["segment", str(inputs), "--out", str(out), *FAST])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    stamp = (out / "good" / "mask.tif").stat().st_mtime_ns
    assert main(["segment", str(namesake), "--out", str(out), *FAST]) == 1  # a later run: not overwritten
    assert "holds the outputs of another input" in capsys.readouterr().err

    assert snapshot(tmp_path, skip=out) == before
    assert (out / "good" / "mask.tif").stat().st_mtime_ns == stamp
    assert code == 1 and "Traceback" not in err and elapsed < 120
    failed = {line.removeprefix("error: ").split(": ")[0] for line in error_lines(err)}
    assert failed == {str(inputs / name) for name in ("huge.vrt", "sparse.tif", "empty.tif", "text.tif", "truncated.tif")}
    assert all(p.is_dir() for p in out.iterdir() if p.name not in ROOT_FILES)  # every output in its own folder
    for name in ("good", "__", "_", "new_line"):
        assert (out / name / "manifest.json").is_file(), name
    assert not leftovers(out)
    assert good.is_file()
