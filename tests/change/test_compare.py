"""``change``: water between dates from output folders of segment (synthetic masks with known answers, one real pair)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine, from_origin

from samgeo_pipeline.change.compare import (
    ChangeInputError,
    read_folders,
    run_change,
    target_grid,
)
from samgeo_pipeline.cli import main
from samgeo_pipeline.errors import OutputConflictError, UnsafePathError
from tests.io.test_dates import tagged_raster
from tests.scenes import DATA_DIR

UTM = "EPSG:32633"
T = from_origin(500000, 5000000, 10, 10)  # 10 m pixels: 100 m² each


def folder(root: Path, name: str, mask: np.ndarray, *, crs: str | None = UTM, transform: Affine = T,
           status: str = "done", image_name: str | None = None) -> Path:
    """A finished output folder of segment: ``mask.tif`` (255 nodata) and a manifest naming the image."""
    out = root / name
    out.mkdir(parents=True)
    if mask is not None:
        with rasterio.open(out / "mask.tif", "w", driver="GTiff", width=mask.shape[1], height=mask.shape[0],
                           count=1, dtype="uint8", nodata=255, crs=crs, transform=transform) as ds:  # fmt: skip
            ds.write(mask.astype(np.uint8), 1)
    image = root / "images" / (image_name or f"{name}.tif")
    manifest = {"manifest_version": 1, "status": status, "input": {"path": str(image), "source": str(image)}}
    if status == "uncertain":
        manifest["uncertain"] = {"reason": "71 % dark and smooth", "what_to_do": "map NIR"}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def quiet(_: str) -> None:
    pass


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Two dates, 2009 and 2020, 60 x 80: a lake that shrinks on one side and grows on another."""
    a = np.zeros((60, 80), np.uint8)
    b = np.zeros((60, 80), np.uint8)
    a[10:30, 10:40] = 1  # 600 px
    b[10:30, 20:50] = 1  # 600 px: 400 stay, 200 lost (cols 10-19), 200 gained (cols 40-49)
    b[45:50, 60:70] = 1  # a new pond: 50 px gained
    return folder(tmp_path, "scene_20090818", a), folder(tmp_path, "scene_20200831", b), a, b


class TestClasses:
    def test_a_pair_gives_exact_gained_lost_and_permanent_pixels(self, pair, tmp_path):
        a_dir, b_dir, a, b = pair
        result = run_change([b_dir, a_dir], tmp_path / "chg", log=quiet)  # order given does not matter
        assert [d.date.label for d in result.dates] == ["2009-08-18", "2020-08-31"]
        change = read(tmp_path / "chg" / "change.tif")
        assert (change == 1).sum() == 400 and (change == 2).sum() == 250 and (change == 3).sum() == 200
        assert (change == 0).sum() == a.size - 850 and set(np.unique(change)) == {0, 1, 2, 3}
        assert result.class_pixels[2] == 250 and result.class_area_m2[2] == pytest.approx(25000.0)
        assert result.date_pixels == [600, 650] and result.date_area_m2 == pytest.approx([60000.0, 65000.0])
        occurrence = read(tmp_path / "chg" / "occurrence.tif")
        assert (occurrence == 100).sum() == 400 and (occurrence == 50).sum() == 450
        manifest = json.loads((tmp_path / "chg" / "manifest.json").read_text())
        assert manifest["change"]["classes"]["3"] == {"name": "lost permanent", "pixels": 200, "area_m2": 20000.0}
        assert [d["source"] for d in manifest["change"]["dates"]] == ["file name", "file name"]

    def test_polygons_per_class_and_water_bodies_per_date(self, pair, tmp_path):
        a_dir, b_dir, _, _ = pair
        run_change([a_dir, b_dir], tmp_path / "chg", log=quiet)
        classes = gpd.read_file(tmp_path / "chg" / "change.gpkg", layer="change")
        area = classes.groupby("class")["area_m2"].sum()
        assert area[1] == pytest.approx(40000) and area[2] == pytest.approx(25000) and area[3] == pytest.approx(20000)
        assert len(classes[classes["class"] == 2]) == 2  # the lake's new side and the new pond
        bodies = gpd.read_file(tmp_path / "chg" / "change.gpkg", layer="water_bodies")
        assert list(bodies["body_id"]) == [1, 2]
        assert list(bodies["extent_m2"]) == pytest.approx([80000, 5000])  # 800 px ever wet, the pond 50
        assert list(bodies["water_m2_2009_08_18"]) == pytest.approx([60000, 0])
        assert list(bodies["water_m2_2020_08_31"]) == pytest.approx([60000, 5000])
        rows = (tmp_path / "chg" / "areas.csv").read_text().splitlines()
        assert rows[0] == "kind,key,name,pixels,area_m2,share_of_valid"
        assert "class,2,new permanent,250,25000.0," in "\n".join(rows)

    def test_water_bodies_are_numbered_largest_first(self, tmp_path):
        a = np.zeros((30, 30), np.uint8)
        a[1:3, 1:3] = 1  # a small pond in the first rows
        a[10:25, 5:25] = 1  # a large lake below it
        b = a.copy()
        b[10:25, 5:15] = 0
        run_change([folder(tmp_path, "x_2001", a), folder(tmp_path, "x_2002", b)], tmp_path / "chg", log=quiet)
        bodies = gpd.read_file(tmp_path / "chg" / "change.gpkg", layer="water_bodies")
        assert list(bodies["extent_m2"]) == pytest.approx([30000, 400])
        assert list(bodies["water_m2_2002"]) == pytest.approx([15000, 400])

    def test_outputs_are_cogs_and_a_png(self, pair, tmp_path):
        run_change(pair[:2], tmp_path / "chg", log=quiet)
        for name in ("change.tif", "occurrence.tif"):
            with rasterio.open(tmp_path / "chg" / name) as ds:
                assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and ds.nodata == 255
        assert (tmp_path / "chg" / "change.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not [p for p in (tmp_path / "chg").iterdir() if ".partial-" in p.name or ".work-" in p.name]


class TestGrids:
    def test_a_coarser_date_is_read_on_the_first_grid(self, tmp_path):
        a = np.zeros((40, 40), np.uint8)
        a[0:20, 0:20] = 1
        coarse = np.zeros((20, 20), np.uint8)  # 20 m pixels over the same extent
        coarse[5:15, 5:15] = 1  # = fine rows/cols 10-29
        d1 = folder(tmp_path, "x_2001", a)
        d2 = folder(tmp_path, "x_2002", coarse, transform=from_origin(500000, 5000000, 20, 20))
        result = run_change([d1, d2], tmp_path / "chg", log=quiet)
        assert result.grid.width == 40 and result.grid.transform.a == 10
        change = read(tmp_path / "chg" / "change.tif")
        assert (change == 1).sum() == 100 and (change == 3).sum() == 300 and (change == 2).sum() == 300

    def test_a_shifted_date_leaves_its_uncovered_edge_nodata(self, tmp_path):
        a = np.zeros((30, 30), np.uint8)
        a[10:20, 10:20] = 1
        b = np.zeros((30, 30), np.uint8)
        b[10:20, 9:19] = 1  # the same lake, on a grid one pixel to the east: same place on the ground
        d1 = folder(tmp_path, "x_2001", a)
        d2 = folder(tmp_path, "x_2002", b, transform=from_origin(500010, 5000000, 10, 10))
        run_change([d1, d2], tmp_path / "chg", log=quiet)
        change = read(tmp_path / "chg" / "change.tif")
        assert (change[:, 0] == 255).all() and (change[:, 1:] != 255).all()
        assert (change == 1).sum() == 100 and not np.isin(change, (2, 3)).any()

    def test_another_crs_is_warped_onto_the_first_grid(self, tmp_path):
        a = np.zeros((40, 40), np.uint8)
        a[10:30, 10:30] = 1
        d1 = folder(tmp_path, "x_2001", a)
        # the same mask in WGS84, finely sampled (2.5 m), so the nearest-neighbour round trip is exact inside
        with rasterio.open(d1 / "mask.tif") as src:
            from rasterio.warp import calculate_default_transform, reproject

            t, w, h = calculate_default_transform(src.crs, "EPSG:4326", 40, 40, *src.bounds,
                                                  resolution=2.5 / 111_000)  # fmt: skip
            out = np.full((h, w), 255, np.uint8)
            reproject(a, out, src_transform=src.transform, src_crs=src.crs, dst_transform=t, dst_crs="EPSG:4326",
                      src_nodata=255, dst_nodata=255)  # fmt: skip
        d2 = folder(tmp_path, "x_2002", out, crs="EPSG:4326", transform=t)
        run_change([d1, d2], tmp_path / "chg", log=quiet)
        change = read(tmp_path / "chg" / "change.tif")
        inside = change[2:-2, 2:-2]
        assert (inside != 255).all() and 396 <= (change == 1).sum() <= 400 and (inside == 2).sum() == 0

    def test_crs_and_gsd_options_make_the_grid(self, pair, tmp_path):
        result = run_change(pair[:2], tmp_path / "chg", crs="EPSG:32632", gsd=20, log=quiet)
        with rasterio.open(tmp_path / "chg" / "change.tif") as ds:
            assert ds.crs.to_epsg() == 32632 and ds.res == pytest.approx((20, 20))
        assert result.date_area_m2[0] == pytest.approx(60000, rel=0.1)
        geo = target_grid(pair[0] / "mask.tif", "EPSG:4326", 10)
        assert geo.transform.a == pytest.approx(10 / 111_320, rel=0.01)  # metres, on a geographic CRS too

    def test_nodata_on_any_date_is_nodata(self, pair, tmp_path):
        a_dir, b_dir, a, b = pair
        for path, box in ((a_dir, np.s_[0:5, 0:80]), (b_dir, np.s_[0:60, 75:80])):
            with rasterio.open(path / "mask.tif", "r+") as ds:
                data = ds.read(1)
                data[box] = 255
                ds.write(data, 1)
        result = run_change([a_dir, b_dir], tmp_path / "chg", log=quiet)
        holes = np.zeros(a.shape, bool)
        holes[0:5, :] = holes[:, 75:80] = True
        for name in ("change.tif", "occurrence.tif"):
            assert ((read(tmp_path / "chg" / name) == 255) == holes).all()
        assert result.valid_pixels == (~holes).sum()


class TestDates:
    def test_the_run_says_where_each_date_came_from(self, tmp_path):
        a = np.zeros((8, 8), np.uint8)
        d1 = folder(tmp_path, "one", a, image_name="one.tif")
        d2 = folder(tmp_path, "two", a, image_name="two_2015.tif")
        tagged_raster(tmp_path / "images" / "one.tif", {"ACQUISITIONDATETIME": "2010-06-01T00:00:00Z"})
        lines: list[str] = []
        dates, _ = read_folders([d1, d2], log=lines.append)
        assert [(d.date.label, d.date.source) for d in dates] == [("2010-06-01", "tag ACQUISITIONDATETIME"),
                                                                  ("2015", "file name")]  # fmt: skip
        assert any("date 2010-06-01 (tag ACQUISITIONDATETIME)" in line for line in lines)
        dates, _ = read_folders([d1, d2], ["2020", "2019-05-01"], log=quiet)
        assert [d.folder.name for d in dates] == ["two", "one"] and {d.date.source for d in dates} == {"option"}
        with pytest.raises(ChangeInputError, match="--dates gives 1 date"):
            read_folders([d1, d2], ["2020"], log=quiet)
        with pytest.raises(ChangeInputError, match="same date 2020"):
            read_folders([d1, d2], ["2020", "2020"], log=quiet)


class TestRefusals:
    def test_an_uncertain_folder_is_left_out_and_reported(self, pair, tmp_path):
        a_dir, b_dir, _, _ = pair
        unsure = folder(tmp_path, "scene_20150926", None, status="uncertain")
        lines: list[str] = []
        result = run_change([a_dir, unsure, b_dir], tmp_path / "chg", log=lines.append)
        assert len(result.dates) == 2 and result.left_out[0]["folder"] == str(unsure)
        assert any(line.startswith("left out:") and "uncertain" in line for line in lines)
        manifest = json.loads((tmp_path / "chg" / "manifest.json").read_text())
        assert "71 % dark and smooth" in manifest["change"]["left_out"][0]["reason"]
        with pytest.raises(ChangeInputError, match=r"1 usable date\(s\) of 2 folder\(s\) \(left out: 1\); change needs two"):
            run_change([a_dir, unsure], tmp_path / "chg2", log=quiet)
        assert not (tmp_path / "chg2").exists()

    def test_not_an_output_folder(self, pair, tmp_path):
        (tmp_path / "empty").mkdir()
        with pytest.raises(ChangeInputError, match=r"empty: not a finished output folder of segment"):
            run_change([pair[0], tmp_path / "empty"], tmp_path / "chg", log=quiet)

    def test_out_never_writes_over_inputs(self, pair, tmp_path):
        a_dir, b_dir, _, _ = pair
        before = {p: p.read_bytes() for d in (a_dir, b_dir) for p in d.iterdir()}
        with pytest.raises(UnsafePathError, match="is or lies in the input folder"):
            run_change([a_dir, b_dir], a_dir, log=quiet)
        with pytest.raises(UnsafePathError, match="is or lies in the input folder"):
            run_change([a_dir, b_dir], b_dir / "sub", log=quiet)
        linked = tmp_path / "linked"
        linked.mkdir()
        (linked / "change.tif").symlink_to(a_dir / "mask.tif")
        with pytest.raises(UnsafePathError, match="leads to an input"):
            run_change([a_dir, b_dir], linked, log=quiet)
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        (foreign / "areas.csv").write_text("mine")
        with pytest.raises(OutputConflictError, match="change did not write"):
            run_change([a_dir, b_dir], foreign, log=quiet)
        (foreign / "manifest.json").write_text("{}")
        with pytest.raises(OutputConflictError, match="not a manifest of change"):
            run_change([a_dir, b_dir], foreign, log=quiet)
        assert {p: p.read_bytes() for d in (a_dir, b_dir) for p in d.iterdir()} == before
        assert (foreign / "areas.csv").read_text() == "mine"
        run_change([a_dir, b_dir], tmp_path / "chg", log=quiet)
        run_change([a_dir, b_dir], tmp_path / "chg", log=quiet)  # its own earlier outputs are replaced

    def test_cli(self, pair, tmp_path, capsys):
        a_dir, b_dir, _, _ = pair
        assert main(["change", str(a_dir), str(b_dir), "--out", str(tmp_path / "chg")]) == 0
        out = capsys.readouterr().out
        assert "2009-08-18\t0.0600 km² water" in out and "2020-08-31\t0.0650 km² water" in out
        assert main(["change", str(a_dir), "--out", str(tmp_path / "c2"), "--dates", "2009,2010"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["error: --dates gives 2 date(s) for 1 folder(s); give one per folder, in order"]
        for flag, value, reason in (("--gsd", "nan", "gsd=nan: must be a finite number > 0"),
                                    ("--gsd", "-5", "gsd=-5.0: must be a finite number > 0"),
                                    ("--crs", "EPSG:999999", "crs='EPSG:999999': not a CRS")):  # fmt: skip
            assert main(["change", str(a_dir), str(b_dir), "--out", str(tmp_path / "c3"), flag, value]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and reason in err[0]
        assert not (tmp_path / "c3").exists()


def test_real_pair_naip_2009_2020(tmp_path):
    """NAIP 2009 and 2020 through ``segment --model none`` into tmp, then ``change``: pinned pixels.

    The two files' grids differ by 1-2 m (and a row), so 2020 is warped onto 2009's grid."""
    folder_ = DATA_DIR / "naip_potholes"
    images = sorted(folder_.glob("*_2009*.tif")) + sorted(folder_.glob("*_2020*.tif")) if folder_.is_dir() else []
    if len(images) != 2:
        pytest.skip(f"real data not found: {folder_} (../shared/data beside the project)")
    argv = ["segment", *map(str, images), "--out", str(tmp_path / "seg"), "--model", "none", "--bands", "naip",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = run_change(sorted(p for p in (tmp_path / "seg").iterdir() if p.is_dir()), tmp_path / "chg", log=quiet)
    assert [d.date.label for d in result.dates] == ["2009-08-18", "2020-08-31"]
    assert {d.date.source for d in result.dates} == {"file name"}
    assert [result.class_pixels[c] for c in (1, 2, 3)] == [90204, 85518, 282]  # permanent, new, lost
    change = read(tmp_path / "chg" / "change.tif")
    assert (change == 2).sum() == 85518 and (change == 3).sum() == 282
    assert (change[-1] == 255).all() and (change == 255).sum() == 934  # 2020 is one row shorter
    assert result.date_pixels == [90486, 175722]


def test_without_crs_pixels_are_counted_and_areas_unknown(tmp_path):
    """Masks in pixel coordinates (inputs without georeferencing) on the same grid: exact pixels, NaN areas."""
    a = np.zeros((20, 20), np.uint8)
    b = np.zeros((20, 20), np.uint8)
    a[2:6, 2:6] = 1
    b[2:6, 4:8] = 1
    ident = Affine.identity()
    result = run_change([folder(tmp_path, "c_2001", a, crs=None, transform=ident),
                         folder(tmp_path, "c_2002", b, crs=None, transform=ident)], tmp_path / "chg", log=quiet)  # fmt: skip
    assert [result.class_pixels[c] for c in (1, 2, 3)] == [8, 8, 8] and np.isnan(result.class_area_m2[1])
    assert len(gpd.read_file(tmp_path / "chg" / "change.gpkg", layer="change")) == 3


def test_masks_that_do_not_overlap_are_refused(tmp_path):
    a = np.ones((10, 10), np.uint8)
    far = from_origin(600000, 5000000, 10, 10)  # 100 km east
    with pytest.raises(ChangeInputError, match="no pixel has data on every date .* no output written"):
        run_change([folder(tmp_path, "x_2001", a), folder(tmp_path, "x_2002", a, transform=far)], tmp_path / "chg",
                   log=quiet)  # fmt: skip
    assert not [p for p in (tmp_path / "chg").iterdir() if not p.name.startswith(".samgeo-lock")]


def test_no_water_on_any_date_gives_empty_layers(tmp_path):
    a = np.zeros((10, 10), np.uint8)
    result = run_change([folder(tmp_path, "x_2001", a), folder(tmp_path, "x_2002", a)], tmp_path / "chg", log=quiet)
    assert result.class_pixels[0] == 100 and result.bodies == 0
    for layer in ("change", "water_bodies"):
        assert len(gpd.read_file(tmp_path / "chg" / "change.gpkg", layer=layer)) == 0


def test_results_do_not_depend_on_the_windows(pair, tmp_path, monkeypatch):
    """Rasters, counts, polygons and bodies by 1024² windows and by 16² ones (regions across many windows)."""
    import samgeo_pipeline.change.raster as change_raster

    big = run_change(pair[:2], tmp_path / "big", log=quiet)
    monkeypatch.setattr(change_raster, "WINDOW", 16)
    small = run_change(pair[:2], tmp_path / "small", log=quiet)
    for name in ("change.tif", "occurrence.tif"):
        assert (read(tmp_path / "big" / name) == read(tmp_path / "small" / name)).all()
    assert (big.class_pixels, big.date_area_m2) == (small.class_pixels, small.date_area_m2)
    for layer in ("change", "water_bodies"):
        a = gpd.read_file(tmp_path / "big" / "change.gpkg", layer=layer).drop(columns="geometry")
        b = gpd.read_file(tmp_path / "small" / "change.gpkg", layer=layer).drop(columns="geometry")
        assert a.sort_values(list(a.columns)).values.tolist() == b.sort_values(list(b.columns)).values.tolist()


def test_real_series_pucallpa_1985_2000_2020(tmp_path):
    """Three Landsat dates (EPSG:4326, years in the file names): lost, new and ephemeral river bed pinned."""
    folder_ = DATA_DIR / "landsat_pucallpa"
    images = sorted(folder_.glob("landsat_*.tif")) if folder_.is_dir() else []
    if len(images) != 3:
        pytest.skip(f"real data not found: {folder_} (../shared/data beside the project)")
    argv = ["segment", *map(str, images), "--out", str(tmp_path / "seg"), "--model", "none",
            "--bands", "swir=1,nir=2,red=3,green=4", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = run_change(sorted(p for p in (tmp_path / "seg").iterdir() if p.is_dir()), tmp_path / "chg", log=quiet)
    assert [(d.date.label, d.date.source) for d in result.dates] == [(y, "file name") for y in ("1985", "2000", "2020")]
    assert [result.class_pixels[c] for c in (1, 2, 3, 9)] == [4049, 7062, 10746, 4889]
    assert result.date_pixels == [14795, 13297, 11111]
    assert result.date_area_m2[0] == pytest.approx(117.78e6, rel=1e-3)  # geodesic pixel areas near 8.4° S
    import samgeo_pipeline.change.raster as change_raster

    with pytest.MonkeyPatch.context() as patch:  # by 100² windows: each row keeps its own area
        patch.setattr(change_raster, "WINDOW", 100)
        windowed = run_change(sorted(p for p in (tmp_path / "seg").iterdir() if p.is_dir()), tmp_path / "chg100", log=quiet)
    assert windowed.date_area_m2 == pytest.approx(result.date_area_m2, rel=1e-12)
    assert windowed.class_area_m2 == pytest.approx(result.class_area_m2, rel=1e-12)
    bodies = [gpd.read_file(tmp_path / d / "change.gpkg", layer="water_bodies") for d in ("chg", "chg100")]
    assert bodies[0]["water_m2_2020"].sum() == pytest.approx(result.date_area_m2[2], rel=1e-9)
    assert bodies[1]["water_m2_2020"].sum() == pytest.approx(result.date_area_m2[2], rel=1e-9)
