"""One raster end to end with ``--model none``: grid, COG, polygons, areas, outputs, manifest, re-runs."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio import features
from scipy import ndimage

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import demo_nodata, demo_water, write_demo_scene
from samgeo_pipeline.errors import NotGeoreferencedWarning, SamgeoPipelineError
from samgeo_pipeline.io.folders import LOCK_NAME
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.tiling import make_grid
from samgeo_pipeline.outputs.manifest import Manifest
from samgeo_pipeline.outputs.vectorize import mask_polygons
from samgeo_pipeline.run.image import SegmentResult, segment_raster
from tests.scenes import (
    DEMO_SHAPE,
    GEO_TRANSFORM,
    M_PER_DEG_LAT,
    M_PER_DEG_LON,
    disc,
    iou,
    leftovers,
    read_mask,
    rgbn_scene,
    run,
    write_raster,
)

STAGES = {"inspect", "stats", "tiles", "cog", "vectorize", "quicklook", "total"}


def water_frame(out_dir: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(out_dir / "water.gpkg", layer="water")


def check_grid(input_path: Path, out_dir: Path, name: str = "mask.tif") -> None:
    """The output has exactly the input's CRS, transform and size."""
    with rasterio.open(input_path) as src, rasterio.open(out_dir / name) as out:
        assert out.crs == src.crs
        assert out.transform == src.transform
        assert (out.width, out.height, out.count) == (src.width, src.height, 1)


def check_polygons_on_mask(out_dir: Path) -> None:
    """Polygons lie inside the raster's bounds and burn back to exactly the mask's water."""
    frame = water_frame(out_dir)
    with rasterio.open(out_dir / "mask.tif") as ds:
        mask, bounds, transform, crs = ds.read(1), ds.bounds, ds.transform, ds.crs
    assert frame.crs == crs
    x0, y0, x1, y1 = frame.total_bounds
    assert bounds.left <= x0 < x1 <= bounds.right and bounds.bottom <= y0 < y1 <= bounds.top
    burnt = features.rasterize(frame.geometry, out_shape=mask.shape, transform=transform, fill=0, default_value=1)
    np.testing.assert_array_equal(burnt == 1, mask == 1)
    assert len(frame) == ndimage.label(mask == 1)[1]  # one polygon per 4-connected region


class TestProjected:
    """The demo scene (river, three lakes, nodata margin) in UTM, small tiles."""

    def test_status(self, demo_utm_run: SegmentResult) -> None:
        assert demo_utm_run.status == "done" and demo_utm_run.error is None

    def test_mask_grid_dtype_nodata(self, demo_utm: Path, demo_utm_run: SegmentResult) -> None:
        check_grid(demo_utm, demo_utm_run.out_dir)
        with rasterio.open(demo_utm_run.out_dir / "mask.tif") as ds:
            assert ds.crs.to_epsg() == 32633
            assert ds.dtypes[0] == "uint8" and ds.nodata == 255

    def test_nodata_exactly_on_input_nodata(self, demo_utm_run: SegmentResult, demo_truth: tuple) -> None:
        _, nodata = demo_truth
        mask = read_mask(demo_utm_run.out_dir)
        np.testing.assert_array_equal(mask == 255, nodata)
        assert set(np.unique(mask)) == {0, 1, 255}

    def test_water_matches_truth(self, demo_utm_run: SegmentResult, demo_truth: tuple) -> None:
        water, nodata = demo_truth
        assert iou(read_mask(demo_utm_run.out_dir) == 1, water & ~nodata) > 0.99

    def test_mask_is_a_cog_with_overviews(self, demo_utm_run: SegmentResult) -> None:
        with rasterio.open(demo_utm_run.out_dir / "mask.tif") as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.overviews(1) == [2]
            assert ds.block_shapes[0] == (512, 512)
            overview = ds.read(1, out_shape=(300, 400))
        assert set(np.unique(overview)) <= {0, 1, 255}  # nearest: no blended classes

    def test_polygons(self, demo_utm_run: SegmentResult) -> None:
        check_polygons_on_mask(demo_utm_run.out_dir)
        frame = water_frame(demo_utm_run.out_dir)
        assert len(frame) == 4 == demo_utm_run.polygons  # river + three lakes
        assert pyogrio.list_layers(demo_utm_run.out_dir / "water.gpkg").tolist() == [["water", "Polygon"]]

    def test_areas_in_metres(self, demo_utm_run: SegmentResult) -> None:
        frame = water_frame(demo_utm_run.out_dir)
        np.testing.assert_allclose(frame.area_m2, frame.geometry.area)
        np.testing.assert_allclose(frame.perimeter_m, frame.geometry.length)
        water_px = int((read_mask(demo_utm_run.out_dir) == 1).sum())
        assert frame.area_m2.sum() == pytest.approx(water_px * 4.0)
        assert demo_utm_run.water_area_m2 == pytest.approx(water_px * 4.0)

    def test_probability(self, demo_utm: Path, demo_utm_run: SegmentResult) -> None:
        out = demo_utm_run.out_dir
        check_grid(demo_utm, out, "probability.tif")
        with rasterio.open(out / "probability.tif") as ds:
            assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            prob = ds.read(1)
        mask = read_mask(out)
        np.testing.assert_array_equal(np.isnan(prob), mask == 255)
        np.testing.assert_array_equal(prob[mask != 255], mask[mask != 255].astype(np.float32))

    def test_quicklook(self, demo_utm_run: SegmentResult) -> None:
        path = demo_utm_run.out_dir / "quicklook.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.size == (DEMO_SHAPE[1], DEMO_SHAPE[0])
            pixels = np.asarray(image)
        assert (pixels == (255, 40, 200)).all(axis=-1).any()  # water outlines drawn

    def test_manifest(self, demo_utm: Path, demo_utm_run: SegmentResult, demo_truth: tuple) -> None:
        out = demo_utm_run.out_dir
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest == json.loads(json.dumps(demo_utm_run.manifest.to_dict(), default=str))
        config = SegmentConfig(model="none", progress=False, tile_size=256, halo=64, probability=True)
        assert manifest["status"] == "done" and manifest["error"] is None
        assert manifest["input"]["path"] == str(demo_utm)
        assert manifest["input"]["sha256"] == hashlib.sha256(demo_utm.read_bytes()).hexdigest()
        assert manifest["input"]["bytes"] == demo_utm.stat().st_size
        assert manifest["input"]["crs"] == "EPSG:32633"
        assert manifest["input"]["band_map"] == {"red": 1, "green": 2, "blue": 3, "nir": 4}
        assert manifest["input"]["band_map_source"] == "descriptions"  # the demo names its bands
        assert (manifest["input"]["width"], manifest["input"]["height"]) == (800, 600)
        assert manifest["parameters"] == config.to_dict()
        assert manifest["params_hash"] == config.params_hash()
        assert manifest["model"]["id"] == "none"
        assert manifest["radiometry"]["index"] == "ndwi"
        grid = make_grid(inspect_raster(demo_utm), config)  # every tile coarse-only
        assert (manifest["grid"]["rows"], manifest["grid"]["cols"]) == (grid.rows, grid.cols) and len(grid) > 1
        assert manifest["grid"]["model_px_per_image_px"] == round(len(grid) * 1024**2 / (800 * 600), 3)
        assert manifest["tiles"] == {
            "total": len(grid), "sam": 0, "coarse_only": len(grid), "skipped": 0, "failed": 0, "failed_tiles": []
        }
        assert set(manifest["seconds"]) == STAGES
        assert all(v >= 0 for v in manifest["seconds"].values())
        assert manifest["outputs"] == ["mask.tif", "probability.tif", "water.gpkg", "quicklook.png", "item.json"]
        assert all((out / name).is_file() for name in manifest["outputs"])
        assert manifest["versions"]["rasterio"] and manifest["versions"]["gdal"] and manifest["versions"]["numpy"]
        water, nodata = demo_truth
        assert manifest["water"]["fraction_of_valid"] == pytest.approx((water & ~nodata).sum() / (~nodata).sum(), abs=1e-3)
        assert manifest["water"]["polygons"] == 4
        assert manifest["warnings"] == []

    def test_no_temporary_files(self, demo_utm_run: SegmentResult) -> None:
        assert not leftovers(demo_utm_run.out_dir)
        assert sorted(p.name for p in demo_utm_run.out_dir.iterdir()) == [
            LOCK_NAME, "item.json", "manifest.json", "mask.tif", "probability.tif", "quicklook.png", "water.gpkg"
        ]


class TestGeographic:
    """The demo scene in EPSG:4326 near the equator."""

    def test_grid_and_truth(self, demo_geo: Path, demo_geo_run: SegmentResult, demo_truth: tuple) -> None:
        assert demo_geo_run.status == "done"
        check_grid(demo_geo, demo_geo_run.out_dir)
        with rasterio.open(demo_geo_run.out_dir / "mask.tif") as ds:
            assert ds.crs.to_epsg() == 4326 and ds.transform == GEO_TRANSFORM
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.overviews(1)
        water, nodata = demo_truth
        mask = read_mask(demo_geo_run.out_dir)
        np.testing.assert_array_equal(mask == 255, nodata)
        assert iou(mask == 1, water & ~nodata) > 0.99

    def test_polygons_in_degrees(self, demo_geo_run: SegmentResult) -> None:
        check_polygons_on_mask(demo_geo_run.out_dir)
        frame = water_frame(demo_geo_run.out_dir)
        assert frame.crs.to_epsg() == 4326
        x0, y0, x1, y1 = frame.total_bounds
        assert 30.0 <= x0 and x1 <= 30.08 and -0.01 <= y0 and y1 <= 0.05

    def test_geodesic_areas(self, demo_geo_run: SegmentResult) -> None:
        frame = water_frame(demo_geo_run.out_dir)
        water_px = int((read_mask(demo_geo_run.out_dir) == 1).sum())
        # Within 0.06 degrees of the equator a 1e-4 degree pixel is ~11.13 m x 11.06 m.
        pixel_m2 = 1e-4 * M_PER_DEG_LON * 1e-4 * M_PER_DEG_LAT
        assert frame.area_m2.sum() == pytest.approx(water_px * pixel_m2, rel=0.01)
        assert demo_geo_run.water_area_m2 == pytest.approx(water_px * pixel_m2, rel=0.01)
        ratio = frame.perimeter_m / (shapely.length(frame.geometry.values) * M_PER_DEG_LON)
        assert ratio.between(0.98, 1.01).all()

    def test_square_lake_area(self, tmp_path: Path) -> None:
        water = np.zeros((300, 300), bool)
        water[50:250, 50:250] = True  # 0.02 x 0.02 degrees
        path = write_raster(tmp_path / "square.tif", rgbn_scene(water), crs="EPSG:4326", transform=GEO_TRANSFORM)
        result = run(path, tmp_path / "out")
        frame = water_frame(tmp_path / "out")
        assert result.polygons == len(frame) == 1
        assert frame.area_m2[0] == pytest.approx(0.02 * M_PER_DEG_LON * 0.02 * M_PER_DEG_LAT, rel=0.01)
        assert frame.perimeter_m[0] == pytest.approx(2 * 0.02 * (M_PER_DEG_LON + M_PER_DEG_LAT), rel=0.01)


class TestTiling:
    def test_lake_across_four_tiles_is_one_polygon(self, tmp_path: Path) -> None:
        lake = disc((300, 300), (150, 150), 60)
        path = write_raster(tmp_path / "lake.tif", rgbn_scene(lake))
        result = run(path, tmp_path / "out", tile_size=256, halo=64)
        grid = make_grid(inspect_raster(path), SegmentConfig(tile_size=256, halo=64))
        cores = [t.core_window(300, 300).toslices() for t in grid]
        assert sum(lake[core].any() for core in cores) == 4  # the lake lies across the cores of four tiles
        mask = read_mask(tmp_path / "out")
        np.testing.assert_array_equal(mask == 1, lake)
        frame = water_frame(tmp_path / "out")
        assert len(frame) == 1 == result.polygons
        assert frame.geometry[0].geom_type == "Polygon"
        assert frame.area_m2[0] == pytest.approx(lake.sum() * 4.0)
        # Vectorising by windows smaller than the lake still dissolves it into one polygon.
        polygons, _, _ = mask_polygons(tmp_path / "out" / "mask.tif", window_size=64)
        assert len(polygons) == 1 and polygons[0].area == lake.sum()

    def test_two_tile_sizes_give_identical_masks(
        self, demo_utm: Path, demo_utm_run: SegmentResult, tmp_path: Path
    ) -> None:
        # min_area (64) <= halo + 1, so --model none does not depend on the tiling.
        reference = read_mask(demo_utm_run.out_dir)  # tile 256, halo 64
        for tile_size, halo in [(384, 64), (1024, 128)]:
            out = tmp_path / f"t{tile_size}"
            run(demo_utm, out, tile_size=tile_size, halo=halo)
            np.testing.assert_array_equal(read_mask(out), reference)

    def test_tiling_invariance_with_small_ponds(self, tmp_path: Path) -> None:
        # Ponds of 3-150 px around min_area, scattered over tile borders: which survive the
        # minimum area must not depend on the tiling.
        rng = np.random.default_rng(5)
        water = np.zeros((500, 500), bool)
        for r, c, radius in zip(rng.uniform(0, 500, 150), rng.uniform(0, 500, 150), rng.uniform(1, 7, 150), strict=True):
            water |= disc(water.shape, (r, c), radius)
        nodata = np.zeros_like(water)
        nodata[450:, :100] = True
        path = write_raster(tmp_path / "ponds.tif", rgbn_scene(water, nodata, seed=1))
        masks = []
        for tile_size, halo in [(256, 64), (384, 64), (160, 65)]:
            run(path, tmp_path / f"t{tile_size}", tile_size=tile_size, halo=halo, min_area=60)
            masks.append(read_mask(tmp_path / f"t{tile_size}"))
        kept = masks[0] == 1
        assert 0 < kept.sum() < (water & ~nodata).sum()  # some ponds were dropped, some kept
        for other in masks[1:]:
            np.testing.assert_array_equal(other, masks[0])

    @pytest.mark.parametrize("gsd", [4.0, 1.0], ids=["coarser", "finer"])
    def test_gsd_writes_on_the_input_grid(self, gsd: float, demo_utm: Path, tmp_path: Path, demo_truth: tuple) -> None:
        # The demo has 2 m pixels: gsd 4 halves the working resolution, gsd 1 doubles it.
        result = run(demo_utm, tmp_path / "gsd", gsd=gsd, tile_size=256, halo=32, min_area=16)
        assert result.status == "done"
        check_grid(demo_utm, tmp_path / "gsd")
        assert result.manifest.grid.source_px_per_working_px == pytest.approx(gsd / 2.0, rel=0.02)
        assert result.manifest.parameters["gsd"] == gsd
        water, nodata = demo_truth
        mask = read_mask(tmp_path / "gsd")
        assert iou(mask == 1, water & ~nodata) > 0.95
        # Nodata follows the input within the resampling (one working pixel = 2 source pixels).
        assert iou(mask == 255, nodata) > 0.9
        check_polygons_on_mask(tmp_path / "gsd")

    def test_gsd_in_metres_on_a_geographic_crs(self, demo_geo: Path, tmp_path: Path, demo_truth: tuple) -> None:
        """Issue 21: --gsd was CRS units (degrees here). 1e-4 degree pixels at the equator are about
        11.06 x 11.13 m: --gsd 22 m is about 2 source pixels per working pixel, and a manifest of
        the old meaning (no gsd_unit) is not reused."""
        result = run(demo_geo, tmp_path / "geo", gsd=22.0, tile_size=256, halo=32, min_area=16)
        assert result.manifest.grid.source_px_per_working_px == pytest.approx(22.0 / 11.1, rel=0.01)
        assert result.manifest.grid.gsd_unit == "metre"
        assert "converted at the raster's centre latitude 0.020" in result.manifest.grid.gsd_note
        water, nodata = demo_truth
        assert iou(read_mask(tmp_path / "geo") == 1, water & ~nodata) > 0.95
        assert run(demo_geo, tmp_path / "geo", gsd=22.0, tile_size=256, halo=32, min_area=16).status == "skipped"
        manifest = json.loads((tmp_path / "geo" / "manifest.json").read_text())
        del manifest["grid"]["gsd_unit"]
        (tmp_path / "geo" / "manifest.json").write_text(json.dumps(manifest))
        assert run(demo_geo, tmp_path / "geo", gsd=22.0, tile_size=256, halo=32, min_area=16).status == "done"


class TestSpecialInputs:
    @pytest.mark.filterwarnings("ignore:'crs' was not provided")  # pyogrio, on the CRS-less GeoPackage
    def test_not_georeferenced(self, tmp_path: Path) -> None:
        path = write_demo_scene(tmp_path / "plain.tif", 200, 300, crs=None)
        with pytest.warns(NotGeoreferencedWarning, match=r"plain.tif: no CRS or geotransform; outputs are in pixel"):
            result = run(path, tmp_path / "out")
        assert result.status == "done"
        assert result.water_area_m2 is None and result.polygons >= 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(tmp_path / "out" / "mask.tif") as ds:
                assert ds.crs is None and (ds.width, ds.height) == (300, 200)
            frame = water_frame(tmp_path / "out")
        assert frame.crs is None and frame.area_m2.isna().all()
        x0, y0, x1, y1 = frame.total_bounds
        assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 200  # pixel coordinates
        water = demo_water(200, 300) & ~demo_nodata(200, 300)
        assert iou(read_mask(tmp_path / "out") == 1, water) > 0.99
        manifest = result.manifest
        assert manifest.input.crs is None
        assert any("no CRS or geotransform" in w for w in manifest.warnings)
        assert (tmp_path / "out" / "quicklook.png").is_file()

    def test_no_water_gives_empty_valid_layer(self, tmp_path: Path) -> None:
        nodata = np.zeros((300, 300), bool)
        nodata[:, :30] = True
        path = write_raster(tmp_path / "dry.tif", rgbn_scene(np.zeros((300, 300), bool), nodata))
        result = run(path, tmp_path / "out")
        assert result.status == "done" and result.polygons == 0 and result.water_fraction == 0.0
        assert result.water_area_m2 == 0.0
        mask = read_mask(tmp_path / "out")
        np.testing.assert_array_equal(mask == 255, nodata)
        assert not (mask == 1).any()
        info = pyogrio.read_info(tmp_path / "out" / "water.gpkg", layer="water")
        assert info["features"] == 0 and info["geometry_type"] == "Polygon"
        frame = water_frame(tmp_path / "out")
        assert len(frame) == 0 and frame.crs.to_epsg() == 32633
        assert {"area_m2", "perimeter_m"} <= set(frame.columns)
        assert (tmp_path / "out" / "quicklook.png").is_file()

    def test_all_nodata_tiles_are_skipped(self, tmp_path: Path) -> None:
        water = disc((256, 512), (128, 400), 40)
        nodata = np.zeros_like(water)
        nodata[:, :256] = True  # the left half: two whole tiles with no data
        path = write_raster(tmp_path / "half.tif", rgbn_scene(water, nodata))
        result = run(path, tmp_path / "out", tile_size=160, halo=16)
        tiles = result.manifest.tiles
        assert tiles.total == 8 and tiles.skipped == 2 and tiles.coarse_only == 6
        mask = read_mask(tmp_path / "out")
        assert (mask[:, :256] == 255).all()
        np.testing.assert_array_equal(mask[:, 256:] == 1, water[:, 256:])

    def test_sam_requested_without_predictor(self, demo_utm: Path, tmp_path: Path) -> None:
        config = SegmentConfig(model="facebook/sam-vit-base", progress=False)
        with pytest.raises(SamgeoPipelineError, match=r"model 'facebook/sam-vit-base' requested but no predictor"):
            segment_raster(demo_utm, tmp_path / "out", config)


class TestRerun:
    @pytest.fixture
    def scene(self, tmp_path: Path) -> Path:
        path = write_demo_scene(tmp_path / "scene.tif", 200, 300)
        return path

    def mtimes(self, out: Path) -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != LOCK_NAME}

    def test_skip_with_same_parameters(self, scene: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        first = run(scene, out)
        before = self.mtimes(out)
        second = run(scene, out)
        assert first.status == "done" and second.status == "skipped"
        assert second.manifest.to_dict() == json.loads((out / "manifest.json").read_text())
        assert self.mtimes(out) == before
        # Runtime-only options do not change the outputs: still skipped.
        assert run(scene, out, batch_size=8, prefetch=2).status == "skipped"

    def test_overwrite(self, scene: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        run(scene, out)
        before = self.mtimes(out)
        result = run(scene, out, overwrite=True)
        assert result.status == "done"
        after = self.mtimes(out)
        assert all(after[name] != before[name] for name in before)

    def test_changed_parameters_reprocess(self, scene: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        run(scene, out)
        result = run(scene, out, min_area=10)
        assert result.status == "done"
        assert json.loads((out / "manifest.json").read_text())["parameters"]["min_area"] == 10
        assert run(scene, out, min_area=10).status == "skipped"

    def test_changed_input_reprocess(self, scene: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        run(scene, out)
        write_demo_scene(scene, 200, 300, seed=1)  # same name, other bytes
        assert run(scene, out).status == "done"

    def test_retrained_model_in_the_same_folder_reprocesses(self, scene: Path, tmp_path: Path) -> None:
        """Retraining into the same folder (``runs/x/best``) changes the weights, not the path:
        the re-run must redo the image, not keep outputs of the old model."""
        from samgeo_pipeline.run.batch import load_predictor
        from tests.tiny_sam import save_tiny_sam

        model = save_tiny_sam(tmp_path / "best", seed=0)
        config = SegmentConfig(model=str(model), tile_size=256, halo=32, progress=False, device="cpu")
        out = tmp_path / "out"
        assert segment_raster(scene, out, config, *load_predictor(config)).status == "done"
        assert segment_raster(scene, out, config, *load_predictor(config)).status == "skipped"
        save_tiny_sam(model, seed=1)  # retrained: other weights, same folder
        result = segment_raster(scene, out, config, *load_predictor(config))
        assert result.status == "done"
        assert result.manifest.model.fingerprint.startswith("sha256:")

    def test_outputs_of_another_package_version_reprocess(self, scene: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        run(scene, out)
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["versions"]["samgeo-pipeline"] = "0.0.1"
        (out / "manifest.json").write_text(json.dumps(manifest))
        assert run(scene, out).status == "done"

    def test_missing_output_reprocess(self, scene: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        run(scene, out)
        (out / "water.gpkg").unlink()
        assert run(scene, out).status == "done"
        assert (out / "water.gpkg").is_file()

    def test_crash_leaves_no_half_file(self, scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import samgeo_pipeline.run.prepare as reader

        real = reader.prepare_tile

        def failing(ds, info, stats, tile, config):
            if (tile.row, tile.col) == (1, 1):
                raise RuntimeError("disk on fire")
            return real(ds, info, stats, tile, config)

        out = tmp_path / "out"
        run(scene, out)  # a finished earlier run
        monkeypatch.setattr(reader, "prepare_tile", failing)
        with pytest.raises(RuntimeError, match="disk on fire"):
            run(scene, out, tile_size=96, halo=16, overwrite=True)
        assert not leftovers(out)
        assert not (out / "manifest.json").exists()  # the old outputs are not vouched for
        monkeypatch.undo()
        assert run(scene, out).status == "done"  # so the next run redoes them

    def test_crash_on_first_run_leaves_no_mask(self, scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import samgeo_pipeline.run.prepare as reader

        def failing(*args, **kwargs):
            raise RuntimeError("reader died")

        monkeypatch.setattr(reader, "prepare_tile", failing)
        with pytest.raises(RuntimeError, match="reader died"):
            run(scene, tmp_path / "out")
        assert [p.name for p in (tmp_path / "out").iterdir()] == [LOCK_NAME]  # no output, no work file


class TestFinish:
    """The COGs are made on a second thread while the polygons are traced, both from the work file."""

    @pytest.fixture
    def scene(self, tmp_path: Path) -> Path:
        return write_demo_scene(tmp_path / "scene.tif", 200, 300)

    def test_the_cogs_are_made_while_the_polygons_are_traced(self, scene: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
        import threading

        import samgeo_pipeline.run.image as pipeline
        from samgeo_pipeline.run.sink import TileSink

        tracing, seen = threading.Event(), {}
        real_polygons, real_cogs = pipeline.write_polygons, TileSink.make_cogs

        def polygons(mask: Path, *args, **kwargs):
            seen["polygons read"] = mask.name
            tracing.set()
            return real_polygons(mask, *args, **kwargs)

        def cogs(sink: TileSink) -> list[Path]:
            seen["overlap"] = tracing.wait(20)  # one after the other, this times out
            seen["cog thread"] = threading.current_thread() is not threading.main_thread()
            return real_cogs(sink)

        monkeypatch.setattr(pipeline, "write_polygons", polygons)
        monkeypatch.setattr(TileSink, "make_cogs", cogs)
        result = run(scene, tmp_path / "out")
        assert seen["overlap"] and seen["cog thread"]
        assert seen["polygons read"].startswith(".mask.tif.work-")  # the uncompressed work file, not the COG
        assert not leftovers(tmp_path / "out")
        check_polygons_on_mask(result.out_dir)  # the polygons are the COG's water
        assert result.seconds["total"] < sum(v for k, v in result.seconds.items() if k != "total")

    @pytest.mark.parametrize("failing", ["cogs", "polygons"])
    def test_either_failing_leaves_no_work_file_and_no_manifest(self, failing: str, scene: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
        import samgeo_pipeline.run.image as pipeline
        from samgeo_pipeline.run.sink import TileSink

        def fail(*args, **kwargs):
            raise RuntimeError(f"{failing} failed")

        if failing == "cogs":
            monkeypatch.setattr(TileSink, "make_cogs", fail)
        else:
            monkeypatch.setattr(pipeline, "write_polygons", fail)
        out = tmp_path / "out"
        with pytest.raises(RuntimeError, match=f"{failing} failed"):
            run(scene, out)
        assert not leftovers(out) and not (out / "manifest.json").exists()
        # the other one still ends, but (issue 21) no output stays without its manifest
        assert [p for p in out.iterdir() if p.name != LOCK_NAME] == []
        monkeypatch.undo()
        assert run(scene, out).status == "done"


class TestFeedSpeedups:
    """Issue 8: the faster tile path gives exactly what the plain path gave."""

    @staticmethod
    def reference_prepare(ds, info, stats, tile, config):
        """prepare_tile as it was: float32 read, float composite, coarse mask, prompts."""
        from samgeo_pipeline.io.tiling import read_tile
        from samgeo_pipeline.water.coarse import apply_rule
        from samgeo_pipeline.water.prompts import prompts_for
        from samgeo_pipeline.water.radiometry import to_rgb8

        data, valid = read_tile(ds, info, tile)
        rgb = to_rgb8(data, valid, stats)
        coarse = apply_rule(data, valid, stats.coarse, config.min_area, pools=True)
        prompts = []
        if coarse.water.any():
            rng = np.random.default_rng([config.seed, tile.row, tile.col])
            prompts = prompts_for(coarse.water, valid, config, rng, coarse.sure_water, coarse.sure_land)
        return rgb, valid, coarse.water, prompts

    @pytest.mark.parametrize("kind", ["uint8", "uint16", "float32-nan", "alpha-mask"])
    def test_prepare_tile_equals_plain_path(self, kind: str, tmp_path: Path) -> None:
        import samgeo_pipeline.run.prepare as reader
        from samgeo_pipeline.io.raster import inspect_raster
        from samgeo_pipeline.io.tiling import make_grid
        from samgeo_pipeline.water.radiometry import compute_stats
        from tests.scenes import multiband_scene

        water = disc((230, 270), (110, 130), 60) | disc((230, 270), (10, 250), 15)
        nodata = np.zeros_like(water)
        nodata[:, :17] = True
        bands, extra = "auto", {}
        if kind == "uint16":
            image = multiband_scene(water, 5, {"green": 2, "red": 3, "nir": 4, "swir": 5})
            image[:, nodata] = 0
            bands = "green=2,red=3,nir=4,swir=5"
        else:
            image = rgbn_scene(water, nodata)
        if kind == "float32-nan":
            image = image.astype(np.float32)
            image[3, 50:60, 40:200] = np.nan  # NIR missing where the others have data
            image[:, nodata] = np.nan
            extra = {"nodata": np.nan}
        if kind == "alpha-mask":
            image = np.concatenate([image[:3], np.where(nodata, 0, 255).astype(np.uint8)[None]])
            extra = {"nodata": None, "photometric": "RGB", "alpha": "YES"}
            bands = "rgb"
        path = write_raster(tmp_path / f"{kind}.tif", image, **extra)
        config = SegmentConfig(model="facebook/sam-vit-base", bands=bands, tile_size=96, halo=16, min_area=20,
                               negatives=2, progress=False)
        info = inspect_raster(path, config.bands, config.nodata)
        assert info.has_mask == (kind == "alpha-mask")
        with rasterio.open(path) as ds:
            stats = compute_stats(ds, info, config)
            tiles = list(make_grid(info, config))
            assert any(t.core_window(info.height, info.width).col_off + t.core_window(info.height, info.width).width
                       == info.width for t in tiles)  # edge tiles too
            n_prompts = 0
            for tile in tiles:
                got = reader.prepare_tile(ds, info, stats, tile, config)
                rgb, valid, coarse, prompts = self.reference_prepare(ds, info, stats, tile, config)
                np.testing.assert_array_equal(got.rgb, rgb)
                np.testing.assert_array_equal(got.valid, valid)
                np.testing.assert_array_equal(got.coarse, coarse)
                assert len(got.prompts) == len(prompts)
                for a, b in zip(got.prompts, prompts, strict=True):
                    np.testing.assert_array_equal(a.points_xy, b.points_xy)
                    np.testing.assert_array_equal(a.labels, b.labels)
                n_prompts += len(prompts)
        assert n_prompts > 0 or kind == "alpha-mask"  # (the rgb method finds no seed in this small scene)

    def test_reader_threads_and_shared_handles_change_nothing(self, demo_utm: Path, tmp_path: Path) -> None:
        results = {}
        for workers, prefetch in [(1, 1), (3, 2), (5, 16)]:
            out = tmp_path / f"w{workers}"
            result = run(demo_utm, out, tile_size=96, halo=16, min_area=16, read_workers=workers, prefetch=prefetch)
            results[workers] = (read_mask(out), result.water_fraction, result.polygons)
        mask, fraction, polygons = results[1]
        assert fraction == pytest.approx((mask == 1).sum() / (mask != 255).sum())
        for other in (3, 5):
            np.testing.assert_array_equal(results[other][0], mask)
            assert results[other][1:] == (fraction, polygons)

    def test_water_fraction_with_gsd(self, demo_utm: Path, tmp_path: Path) -> None:
        result = run(demo_utm, tmp_path / "gsd", gsd=4.0, tile_size=128, halo=32, min_area=16)
        mask = read_mask(tmp_path / "gsd")
        assert result.water_fraction == pytest.approx((mask == 1).sum() / (mask != 255).sum())

    def test_default_read_workers(self) -> None:
        import os

        from samgeo_pipeline.run.prepare import read_workers

        assert read_workers(SegmentConfig(read_workers=3)) == 3
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        assert read_workers(SegmentConfig()) == max(1, min(32, cpus or 1))


class TestWarningsPerImage:
    @pytest.mark.filterwarnings("ignore")  # shown by the CLI; here each image's own list is checked
    def test_concurrent_images_keep_their_own_warnings(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import threading
        import time

        import samgeo_pipeline.run.image as pipeline

        real_inspect = pipeline.inspect_raster

        def slow_inspect(*args, **kwargs):
            time.sleep(0.2)
            return real_inspect(*args, **kwargs)

        monkeypatch.setattr(pipeline, "inspect_raster", slow_inspect)
        plain = write_demo_scene(tmp_path / "plain.tif", 120, 160, crs=None)
        rgb = write_raster(tmp_path / "rgb.tif", rgbn_scene(disc((120, 160), (60, 80), 30))[:3], crs=None, transform=None)
        start = threading.Barrier(2)
        manifests: dict[str, list[Manifest]] = {"plain": [], "rgb": []}

        def segment(name: str, path: Path) -> None:
            for i in range(3):
                start.wait()
                result = run(path, tmp_path / f"{name}{i}", bands="rgb" if name == "rgb" else "auto")
                manifests[name].append(result.manifest)

        threads = [threading.Thread(target=segment, args=item) for item in (("plain", plain), ("rgb", rgb))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, path in (("plain", plain), ("rgb", rgb)):
            assert len(manifests[name]) == 3
            for manifest in manifests[name]:
                no_crs = f"{path}: no CRS or geotransform; outputs are in pixel coordinates and areas are unknown"
                assert manifest.warnings[0] == no_crs
                assert all(w.startswith(f"{path}: ") for w in manifest.warnings)
                assert len(manifest.warnings) == (2 if name == "rgb" else 1)  # + the RGB-only coarse mask


def test_manifest_says_how_the_bands_were_chosen(tmp_path: Path) -> None:
    """A mapping guessed from the band count is recorded as such; a caller's reason (the watch
    flow's rule) replaces it; an explicit mapping is ``given``."""
    values = np.random.default_rng(0).integers(50, 3000, (4, 64, 64)).astype(np.uint16)
    path = write_raster(tmp_path / "plain.tif", values)  # no descriptions
    guessed = run(path, tmp_path / "guessed", model="none", tile_size=64, halo=8)
    assert guessed.manifest.input.band_map_source == "guessed"
    given = run(path, tmp_path / "given", model="none", tile_size=64, halo=8, bands="naip")
    assert given.manifest.input.band_map_source == "given"
    config = SegmentConfig(model="none", tile_size=64, halo=8, progress=False)
    ruled = segment_raster(path, tmp_path / "ruled", config, bands_source="rule landsat")
    assert ruled.manifest.input.band_map_source == "rule landsat"
