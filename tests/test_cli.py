"""``samgeo-pipeline`` in-process: segment with --model none, config layering, bands, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from samgeo_pipeline.cli import build_parser, config_from_args, main, output_dirs
from samgeo_pipeline.demo import demo_nodata, demo_water, write_demo_scene
from samgeo_pipeline.io.folders import LOCK_NAME
from tests.scenes import disc, iou, multiband_scene, read_mask, write_raster

FAST = ["--model", "none", "--no-progress"]


def segment(*args: object) -> int:
    return main(["segment", *map(str, args), *FAST])


def manifest(out_dir: Path) -> dict:
    return json.loads((out_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 200x300 demo scene (RGBN, UTM), shared by the tests of this module (read only)."""
    return write_demo_scene(tmp_path_factory.mktemp("cli") / "scene.tif", 200, 300)


@pytest.fixture(scope="module")
def lake() -> np.ndarray:
    """``bool (160, 160)``: the truth of the band-mapping scenes, a lake and a river."""
    water = disc((160, 160), (60, 70), 35)
    water[120:132, :] = True
    return water


def lake_file(path: Path, lake: np.ndarray, count: int, bands: dict[str, int]) -> Path:
    return write_raster(path, multiband_scene(lake, count, bands), nodata=None, photometric="minisblack")


class TestSegment:
    def test_one_input(self, scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert segment(scene, "--out", tmp_path / "out") == 0
        out = tmp_path / "out" / "scene"
        assert {p.name for p in out.iterdir()} == {"mask.tif", "water.gpkg", "quicklook.png", "item.json", "manifest.json",
                                                   LOCK_NAME}
        assert manifest(out)["model"]["id"] == "none"
        err = capsys.readouterr().err
        assert "model: none (coarse water mask only" in err
        assert "samgeo-pipeline segment" in err  # the summary table
        assert "scene.tif" in err and "done" in err
        water = demo_water(200, 300) & ~demo_nodata(200, 300)
        assert iou(read_mask(out) == 1, water) > 0.99

    def test_directory_and_glob(self, tmp_path: Path) -> None:
        (tmp_path / "in" / "sub").mkdir(parents=True)
        write_demo_scene(tmp_path / "in" / "a.tif", 100, 120)
        write_demo_scene(tmp_path / "in" / "sub" / "b.tif", 100, 120, seed=1)
        assert segment(tmp_path / "in", "--out", tmp_path / "out1") == 0
        assert {p.name for p in (tmp_path / "out1").iterdir() if p.is_dir()} == {"a", "b"}  # beside catalog.json
        assert segment(str(tmp_path / "in" / "*.tif"), "--out", tmp_path / "out2") == 0
        assert {p.name for p in (tmp_path / "out2").iterdir() if p.is_dir()} == {"a"}

    def test_same_stem_gets_distinct_folders(self, tmp_path: Path) -> None:
        inputs = [tmp_path / "x" / "scene.tif", tmp_path / "y" / "scene.tif", tmp_path / "other.tif"]
        dirs = output_dirs(inputs, tmp_path / "out")
        assert len(set(dirs)) == 3
        assert dirs[2] == tmp_path / "out" / "other"
        assert all(d.name.startswith("scene_") for d in dirs[:2])

    @pytest.mark.filterwarnings("ignore:'crs' was not provided")  # pyogrio, on the CRS-less GeoPackage
    def test_not_georeferenced_runs_with_a_warning(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = write_demo_scene(tmp_path / "plain.tif", 100, 150, crs=None)
        assert segment(path, "--out", tmp_path / "out") == 0
        assert f"warning: {path}: no CRS or geotransform" in capsys.readouterr().err
        m = manifest(tmp_path / "out" / "plain")
        assert m["input"]["crs"] is None and m["water"]["area_m2"] is None and m["water"]["polygons"] >= 1

    @pytest.mark.filterwarnings("ignore:'crs' was not provided")
    def test_every_images_warning_is_shown_once_in_order_whatever_other_threads_do(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first image's polygons run inside a library's ``catch_warnings()`` + ignore-all block
        (pandas and geopandas have such blocks) until the third image's tiles start, so the batch's
        other stages run meanwhile: a ``warnings.warn`` issued then, on any thread, would vanish."""
        import threading
        import warnings

        import samgeo_pipeline.run.image as pipeline

        third_started = threading.Event()
        real_polygons, real_tiles = pipeline.write_polygons, pipeline.RasterRun.tiles

        def polygons(mask: Path, *args, **kwargs):
            if mask.parent.name == "p0":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    third_started.wait(20)
            return real_polygons(mask, *args, **kwargs)

        def tiles(run) -> None:
            if run.path.stem == "p2":
                third_started.set()
            real_tiles(run)

        monkeypatch.setattr(pipeline, "write_polygons", polygons)
        monkeypatch.setattr(pipeline.RasterRun, "tiles", tiles)
        paths = [write_demo_scene(tmp_path / f"p{i}.tif", 80, 90, crs=None, seed=i) for i in range(3)]
        assert segment(*paths, "--out", tmp_path / "out") == 0
        shown = [line for line in capsys.readouterr().err.splitlines() if "no CRS or geotransform" in line]
        assert shown == [f"warning: {p}: no CRS or geotransform; outputs are in pixel coordinates and areas are unknown"
                         for p in paths]  # fmt: skip

    def test_rerun_skips(self, scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert segment(scene, "--out", tmp_path / "out") == 0
        capsys.readouterr()
        assert segment(scene, "--out", tmp_path / "out") == 0
        err = capsys.readouterr().err
        assert "outputs exist with the same parameters, skipped (--overwrite to redo)" in err
        assert "skipped" in err
        assert segment(scene, "--out", tmp_path / "out", "--overwrite") == 0
        assert "skipped (--overwrite" not in capsys.readouterr().err

    def test_probability_flag(self, scene: Path, tmp_path: Path) -> None:
        assert segment(scene, "--out", tmp_path / "out", "--probability") == 0
        assert manifest(tmp_path / "out" / "scene")["outputs"][:2] == ["mask.tif", "probability.tif"]

    def test_nodata_flag(self, lake: np.ndarray, tmp_path: Path) -> None:
        image = multiband_scene(lake, 4, {"red": 1, "green": 2, "blue": 3, "nir": 4}, dtype="int16")
        image[:, :, :30] = -9999  # a fill value the file does not declare
        path = write_raster(tmp_path / "fill.tif", image, nodata=None, photometric="minisblack")
        assert segment(path, "--out", tmp_path / "out", "--nodata", "-9999") == 0
        mask = read_mask(tmp_path / "out" / "fill")
        assert (mask[:, :30] == 255).all() and not (mask[:, 30:] == 255).any()
        assert iou(mask == 1, lake & (np.arange(160) >= 30)[None, :]) > 0.98
        assert manifest(tmp_path / "out" / "fill")["input"]["nodata"] == -9999.0

    def test_gsd_flag(self, scene: Path, tmp_path: Path) -> None:
        assert segment(scene, "--out", tmp_path, "--gsd", "4", "--tile-size", "128", "--halo", "16") == 0
        m = manifest(tmp_path / "scene")
        assert m["grid"]["source_px_per_working_px"] == 2.0
        with rasterio.open(tmp_path / "scene" / "mask.tif") as out, rasterio.open(scene) as src:
            assert (out.transform, out.width, out.height, out.crs) == (src.transform, src.width, src.height, src.crs)

    def test_bad_option_value(self, scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert segment(scene, "--out", tmp_path / "out", "--tile-size", "10") == 1
        assert "error: tile_size=10: must be >= 32 and <= 8192" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()

    def test_missing_input(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert segment(tmp_path / "nope.tif", "--out", tmp_path / "out") == 1
        assert "nope.tif: no such file or directory" in capsys.readouterr().err

    def test_usage_error(self) -> None:
        with pytest.raises(SystemExit) as exc:
            main(["segment", "x.tif"])  # --out is required
        assert exc.value.code == 2

    def test_demo(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["demo", str(tmp_path)]) == 0
        assert (tmp_path / "demo_scene.tif").is_file()
        assert str(tmp_path / "demo_scene.tif") in capsys.readouterr().out


    def test_ctrl_c_exits_130(self, scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
        from samgeo_pipeline.run.image import RasterRun

        def interrupted(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(RasterRun, "tiles", interrupted)
        assert segment(scene, "--out", tmp_path / "out") == 130
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err

    def test_quicklook_of_a_wide_raster_is_shrunk(self, tmp_path: Path) -> None:
        path = write_demo_scene(tmp_path / "wide.tif", 64, 1500)
        assert segment(path, "--out", tmp_path / "out") == 0
        with Image.open(tmp_path / "out" / "wide" / "quicklook.png") as png:
            assert png.size == (1024, round(64 * 1024 / 1500))  # longest side 1024, the aspect kept


class TestConfigLayering:
    def args(self, *argv: str):
        return build_parser().parse_args(["segment", "in.tif", "--out", "o", *argv])

    def test_defaults(self) -> None:
        config = config_from_args(self.args())
        assert config.tile_size == 1024 and config.progress is True and config.model == "facebook/sam-vit-base"

    def test_file_then_flags(self, tmp_path: Path) -> None:
        path = tmp_path / "c.yaml"
        path.write_text("tile_size: 512\nhalo: 64\nmin_area: 10\nmodel: none\nbands: {green: 2, nir: 4}\n")
        config = config_from_args(self.args("--config", str(path), "--min-area", "20", "--no-progress"))
        assert config.tile_size == 512 and config.halo == 64  # from the file
        assert config.min_area == 20  # the flag wins over the file
        assert config.bands == "green=2,nir=4" and config.model == "none"
        assert config.progress is False

    def test_flags_parse_types(self) -> None:
        config = config_from_args(self.args("--percentiles", "1,99", "--gsd", "0.6", "--probability", "--seed", "3"))
        assert config.percentiles == (1.0, 99.0) and config.gsd == 0.6
        assert config.probability is True and config.seed == 3

    def test_config_file_end_to_end(self, scene: Path, tmp_path: Path) -> None:
        path = tmp_path / "c.yaml"
        path.write_text("tile_size: 128\nhalo: 32\nmin_area: 12\nmodel: none\nprobability: true\n")
        assert main(["segment", str(scene), "--out", str(tmp_path / "out"), "--config", str(path),
                     "--min-area", "20", "--no-progress"]) == 0
        params = manifest(tmp_path / "out" / "scene")["parameters"]
        assert (params["tile_size"], params["halo"], params["min_area"]) == (128, 32, 20)
        assert params["probability"] is True and params["model"] == "none"
        assert (tmp_path / "out" / "scene" / "probability.tif").is_file()

    def test_unknown_key_in_file(self, scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "c.yaml"
        path.write_text("tile-size: 128\ncolour: blue\n")
        assert segment(scene, "--out", tmp_path / "out", "--config", path) == 1
        assert "error: unknown option 'colour'" in capsys.readouterr().err


class TestBands:
    def test_naip_preset(self, scene: Path, tmp_path: Path) -> None:
        assert segment(scene, "--out", tmp_path, "--bands", "naip") == 0
        m = manifest(tmp_path / "scene")
        assert m["input"]["band_map"] == {"red": 1, "green": 2, "blue": 3, "nir": 4}
        assert m["radiometry"]["index"] == "ndwi"

    def test_mapping_string(self, scene: Path, tmp_path: Path) -> None:
        assert segment(scene, "--out", tmp_path, "--bands", "green=2,nir=4") == 0
        m = manifest(tmp_path / "scene")
        assert m["input"]["band_map"] == {"green": 2, "nir": 4}
        assert m["radiometry"]["composite"] == ["green", "nir", "green"]
        assert iou(read_mask(tmp_path / "scene") == 1, demo_water(200, 300) & ~demo_nodata(200, 300)) > 0.99

    @pytest.mark.parametrize(("spec", "count"), [("sentinel2", 13), ("auto", 13), ("landsat8", 7)])
    def test_multispectral_presets(self, spec: str, count: int, lake: np.ndarray, tmp_path: Path) -> None:
        preset = "sentinel2" if count == 13 else "landsat8"
        bands = {"sentinel2": {"blue": 2, "green": 3, "red": 4, "nir": 8, "swir": 12, "swir2": 13},
                 "landsat8": {"blue": 2, "green": 3, "red": 4, "nir": 5, "swir": 6, "swir2": 7}}[preset]
        path = lake_file(tmp_path / "ms.tif", lake, count, bands)
        assert segment(path, "--out", tmp_path / "out", "--bands", spec) == 0
        m = manifest(tmp_path / "out" / "ms")
        assert m["input"]["band_map"] == bands
        # uint16 Sentinel-2 is reflectance x 10000 (its quantification value): full DSWE; Landsat 8
        # DN without an MTL beside it is not known as reflectance: DSWE's scale-free tests only.
        assert m["radiometry"]["index"] == "dswe"
        known = m["radiometry"]["coarse"]["reflectance_source"]
        assert known == ("Sentinel-2 quantification value 10000" if preset == "sentinel2" else None)
        assert m["radiometry"]["composite"] == ["red", "green", "blue"]
        assert iou(read_mask(tmp_path / "out" / "ms") == 1, lake) > 0.98

    def test_rgb_preset_uses_the_rgb_method(self, tmp_path: Path) -> None:
        # An RGB scene with textured vegetation, bare soil, bright roofs and dark smooth water (the
        # rgb method finds water by darkness and smoothness: vegetation must be as rough as real).
        rng = np.random.default_rng(2)
        height, width = 240, 240
        water = disc((height, width), (120, 80), 45)
        classes = np.zeros((height, width), int)  # 0 vegetation
        classes[:, 150:] = 1  # soil
        classes[20:50, 170:230] = 2  # roofs
        classes[water] = 3
        colours = np.array([(70, 100, 50), (150, 130, 100), (230, 230, 230), (40, 60, 90)], np.float32)
        roughness = np.where(classes == 0, 40.0, 4.0)
        image = colours[classes].transpose(2, 0, 1) + rng.normal(0, 1, (3, height, width)) * roughness
        path = write_raster(tmp_path / "rgb.tif", np.clip(image, 1, 255).astype(np.uint8))
        assert segment(path, "--out", tmp_path / "out", "--bands", "rgb") == 0
        m = manifest(tmp_path / "out" / "rgb")
        assert m["input"]["band_map"] == {"red": 1, "green": 2, "blue": 3}
        assert m["radiometry"]["index"] == "rgb" and m["radiometry"]["coarse"]["threshold"] is None
        assert any("RGB only" in w for w in m["warnings"])
        assert iou(read_mask(tmp_path / "out" / "rgb") == 1, water) > 0.85  # measured 0.89
        # auto on a 3-band file picks the rgb preset.
        assert segment(path, "--out", tmp_path / "auto") == 0
        assert manifest(tmp_path / "auto" / "rgb")["input"]["band_map"] == {"red": 1, "green": 2, "blue": 3}

    def test_auto_four_bands_is_naip(self, scene: Path, tmp_path: Path) -> None:
        assert segment(scene, "--out", tmp_path) == 0
        assert manifest(tmp_path / "scene")["input"]["band_map"] == {"red": 1, "green": 2, "blue": 3, "nir": 4}

    def test_auto_unknown_band_count_fails(
        self, lake: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = lake_file(tmp_path / "five.tif", lake, 5, {"green": 2, "nir": 4})
        assert segment(path, "--out", tmp_path / "out") == 1
        err = capsys.readouterr().err
        assert "cannot guess the band order of a 5-band file" in err
        assert segment(path, "--out", tmp_path / "out", "--bands", "green=2,nir=4") == 0

    def test_bad_bands_spec(self, scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert segment(scene, "--out", tmp_path / "out", "--bands", "red:1") == 1
        assert "--bands 'red:1': expected a preset" in capsys.readouterr().err

    def test_index_override(self, lake: np.ndarray, tmp_path: Path) -> None:
        path = lake_file(tmp_path / "ms.tif", lake, 7, {"blue": 2, "green": 3, "red": 4, "nir": 5, "swir": 6})
        assert segment(path, "--out", tmp_path, "--bands", "landsat8", "--index", "ndwi") == 0
        assert manifest(tmp_path / "ms")["radiometry"]["index"] == "ndwi"


def test_failed_input_gives_nonzero_exit_others_still_written(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.tif"
    bad.write_text("this is not a GeoTIFF\n")
    code = segment(bad, scene, "--out", tmp_path / "out")
    assert code == 1
    assert (tmp_path / "out" / "scene" / "manifest.json").is_file()
    assert not (tmp_path / "out" / "broken").exists()
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert str(bad) in error_lines[0] and "not a readable raster" in error_lines[0]
    assert "failed" in err and "done" in err  # the summary table has both rows


def test_file_names_are_printed_verbatim(scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Square brackets in a file name are text, not console markup.
    bad = tmp_path / "scene[old].tif"
    bad.write_text("not a raster")
    assert segment(bad, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: not a readable raster" in err.splitlines()[1]
    assert "[old" in err.split("samgeo-pipeline segment", 1)[1]  # in the (wrapped) summary table too


REASON = "water and land overlap (separability 0.12)"


def abstain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every image's coarse rule abstains with :data:`REASON` (the rule as fitted, ``uncertain`` set)."""
    from dataclasses import replace

    import samgeo_pipeline.water.radiometry as radiometry

    fitted = radiometry.fit_rule
    monkeypatch.setattr(radiometry, "fit_rule", lambda *a, **k: replace(fitted(*a, **k), uncertain=REASON))


@pytest.fixture
def abstaining(monkeypatch: pytest.MonkeyPatch) -> None:
    abstain(monkeypatch)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_sam import save_tiny_sam

    return save_tiny_sam(tmp_path_factory.mktemp("model") / "tiny")


class TestUncertain:
    """An image whose coarse rule cannot tell water from land: status ``uncertain``, exit code 3."""

    def sam_segment(self, model: Path, *args: object) -> int:
        return main(["segment", *map(str, args), "--model", str(model), "--device", "cpu", "--tile-size", "256",
                     "--halo", "32", "--no-progress"])  # fmt: skip

    def test_sam_is_not_prompted_and_no_mask_is_written(
        self, scene: Path, tiny_model: Path, tmp_path: Path, abstaining: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:  # fmt: skip
        import samgeo_pipeline.run.tiles as tile_loop
        from samgeo_pipeline.outputs.quicklook import OUTLINE_RGB

        batches = []
        monkeypatch.setattr(tile_loop, "run_sam_batch", lambda *a, **k: batches.append(a))
        assert self.sam_segment(tiny_model, scene, "--out", tmp_path / "out") == 3
        out = tmp_path / "out" / "scene"
        assert batches == []
        assert {p.name for p in out.iterdir()} == {"quicklook.png", "item.json", "manifest.json", LOCK_NAME}
        m = manifest(out)
        assert (m["status"], m["uncertain"]["reason"], m["outputs"]) == ("uncertain", REASON, ["quicklook.png", "item.json"])
        assert "--bands" in m["uncertain"]["what_to_do"] and "--on-uncertain write" in m["uncertain"]["what_to_do"]
        assert m["tiles"]["sam"] == 0 and m["tiles"]["skipped"] == m["tiles"]["total"] > 0
        quicklook = np.asarray(Image.open(out / "quicklook.png"))
        assert (quicklook == OUTLINE_RGB).all(axis=-1).any()  # the rule's candidate water, outlined
        err = capsys.readouterr().err
        assert f"uncertain: {scene}: the coarse rule cannot tell water from land: {REASON}; map NIR/SWIR" in err
        table = err.split("samgeo-pipeline segment", 1)[1]
        row = next(line for line in table.splitlines() if "scene.tif" in line)
        assert "uncertain" in row and "0/0/" in row and "(separability 0.12)" in table  # the reason wraps below

    def test_a_failure_still_exits_1(self, scene: Path, tmp_path: Path, abstaining: None) -> None:
        bad = tmp_path / "broken.tif"
        bad.write_text("not a raster")
        assert segment(bad, scene, "--out", tmp_path / "out") == 1
        assert manifest(tmp_path / "out" / "scene")["status"] == "uncertain"

    def test_rerun_reuses_the_uncertain_outputs(
        self, scene: Path, tmp_path: Path, abstaining: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert segment(scene, "--out", tmp_path / "out") == 3
        capsys.readouterr()
        assert segment(scene, "--out", tmp_path / "out") == 3
        err = capsys.readouterr().err
        assert "outputs exist with the same parameters, skipped" in err and f"uncertain: {scene}" in err
        assert "skipped, uncertain" in err  # the summary row

    def test_an_earlier_runs_mask_is_removed(self, scene: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
        out = tmp_path / "out" / "scene"
        assert segment(scene, "--out", tmp_path / "out", "--probability") == 0
        assert (out / "mask.tif").is_file() and (out / "probability.tif").is_file()
        abstain(monkeypatch)
        assert segment(scene, "--out", tmp_path / "out", "--overwrite", "--probability") == 3
        assert {p.name for p in out.iterdir()} == {"quicklook.png", "item.json", "manifest.json", LOCK_NAME}

    def test_on_uncertain_write_runs_the_image_as_usual(self, scene: Path, tmp_path: Path, abstaining: None) -> None:
        assert segment(scene, "--out", tmp_path / "out", "--on-uncertain", "write") == 3
        out = tmp_path / "out" / "scene"
        assert {p.name for p in out.iterdir()} == {"mask.tif", "water.gpkg", "quicklook.png", "item.json", "manifest.json",
                                                   LOCK_NAME}
        m = manifest(out)
        assert (m["status"], m["uncertain"]["reason"]) == ("uncertain", REASON)
        assert m["parameters"]["on_uncertain"] == "write"
        water = demo_water(200, 300) & ~demo_nodata(200, 300)
        assert iou(read_mask(out) == 1, water) > 0.99

    def test_on_uncertain_takes_skip_or_write(self, scene: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
        assert segment(scene, "--out", tmp_path / "out", "--on-uncertain", "guess") == 1
        assert "on_uncertain='guess': choose one of skip, write" in capsys.readouterr().err
