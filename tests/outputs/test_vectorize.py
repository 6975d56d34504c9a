"""Polygons: one per 4-connected water region, traced by windows and dissolved, mapped to CRS units,
true areas, GeoPackage layer written in batches."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from rasterio.transform import Affine

from samgeo_pipeline.outputs import vectorize
from samgeo_pipeline.outputs.vectorize import LAYER, area_perimeter_m, mask_polygons, to_map, write_polygons
from tests.outputs.test_polygon_trace import components, normalized, write_mask
from tests.scenes import (
    GEO_TRANSFORM,
    M_PER_DEG_LAT,
    M_PER_DEG_LON,
    UTM_TRANSFORM,
    disc,
    leftovers,
)


class TestMaskPolygons:
    def test_dissolved_across_windows(self, lake_mask: np.ndarray, tmp_path: Path) -> None:
        path = write_mask(tmp_path / "mask.tif", lake_mask)
        whole, transform, crs = mask_polygons(path)
        tiled, _, _ = mask_polygons(path, window_size=32)  # the ring spans 3x3 windows
        assert len(whole) == len(tiled) == 2
        assert transform == UTM_TRANSFORM and crs.to_epsg() == 32633
        by_area = sorted(tiled, key=lambda p: -p.area)
        ring = by_area[0]
        assert ring.geom_type == "Polygon" and len(ring.interiors) == 1
        assert ring.area == (lake_mask == 1).sum() - 35
        assert by_area[1].area == 35
        assert shapely.union_all(whole).equals(shapely.union_all(tiled))

    def test_pixel_coordinates(self, tmp_path: Path) -> None:
        mask = np.zeros((20, 30), np.uint8)
        mask[2:5, 10:17] = 1
        (poly,), _, _ = mask_polygons(write_mask(tmp_path / "m.tif", mask))
        assert poly.bounds == (10.0, 2.0, 17.0, 5.0)  # (col, row) pixel corners

    def test_nodata_and_dry(self, tmp_path: Path) -> None:
        mask = np.zeros((20, 20), np.uint8)
        mask[:, :10] = 255
        polygons, _, _ = mask_polygons(write_mask(tmp_path / "m.tif", mask))
        assert polygons == []


def test_to_map() -> None:
    square = shapely.box(10, 2, 17, 5)
    (mapped,) = to_map([square], UTM_TRANSFORM)
    assert mapped.bounds == (500020.0, 5600000.0 - 10.0, 500034.0, 5600000.0 - 4.0)
    assert mapped.area == 7 * 3 * 4.0


class TestAreaPerimeter:
    def test_projected_metres(self) -> None:
        geoms = np.array([shapely.box(0, 0, 100, 50), shapely.box(0, 0, 10, 10).difference(shapely.box(2, 2, 4, 4))])
        area, perimeter = area_perimeter_m(geoms, "EPSG:32633")
        np.testing.assert_allclose(area, shapely.area(geoms))
        np.testing.assert_allclose(perimeter, shapely.length(geoms))
        assert area[1] == 96 and perimeter[1] == 48

    def test_projected_feet(self) -> None:
        # NY Long Island State Plane, US survey feet.
        area, perimeter = area_perimeter_m(np.array([shapely.box(0, 0, 1000, 1000)]), "EPSG:2263")
        foot = 1200 / 3937
        assert area[0] == pytest.approx(1000**2 * foot**2, rel=1e-9)
        assert perimeter[0] == pytest.approx(4000 * foot, rel=1e-9)

    def test_geographic_geodesic(self) -> None:
        # 0.02 x 0.02 degrees straddling the equator: ~2226 m x ~2211 m.
        side = 0.02
        area, perimeter = area_perimeter_m(np.array([shapely.box(30.0, -0.01, 30.0 + side, 0.01)]), "EPSG:4326")
        assert area[0] == pytest.approx(side * M_PER_DEG_LON * side * M_PER_DEG_LAT, rel=0.01)
        assert perimeter[0] == pytest.approx(2 * side * (M_PER_DEG_LON + M_PER_DEG_LAT), rel=0.01)

    def test_without_crs(self) -> None:
        area, perimeter = area_perimeter_m(np.array([shapely.box(0, 0, 1, 1)]), None)
        assert np.isnan(area).all() and np.isnan(perimeter).all()

    def test_empty(self) -> None:
        area, perimeter = area_perimeter_m(np.array([], dtype=object), "EPSG:4326")
        assert area.shape == perimeter.shape == (0,)


class TestWritePolygons:
    def test_layer(self, lake_mask: np.ndarray, tmp_path: Path) -> None:
        path = write_mask(tmp_path / "mask.tif", lake_mask)
        count, total = write_polygons(path, tmp_path / "water.gpkg")
        assert count == 2
        assert pyogrio.list_layers(tmp_path / "water.gpkg").tolist() == [[LAYER, "Polygon"]]
        frame = gpd.read_file(tmp_path / "water.gpkg", layer="water")
        assert frame.crs.to_epsg() == 32633
        assert list(frame.columns) == ["area_m2", "perimeter_m", "geometry"]
        np.testing.assert_allclose(frame.area_m2, frame.geometry.area)
        np.testing.assert_allclose(frame.perimeter_m, frame.geometry.length)
        assert total == pytest.approx((lake_mask == 1).sum() * 4.0)
        assert not leftovers(tmp_path)

    @pytest.mark.parametrize("window_size", [4096, 16])
    def test_empty_layer_is_valid(self, window_size: int, tmp_path: Path) -> None:
        mask = np.zeros((40, 40), np.uint8)
        mask[:, 30:] = 255
        path = write_mask(tmp_path / "mask.tif", mask)
        assert write_polygons(path, tmp_path / "water.gpkg", window_size=window_size) == (0, 0.0)
        assert not leftovers(tmp_path)
        info = pyogrio.read_info(tmp_path / "water.gpkg", layer="water")
        assert info["features"] == 0 and info["geometry_type"] == "Polygon"
        frame = gpd.read_file(tmp_path / "water.gpkg", layer="water")
        assert len(frame) == 0 and frame.crs.to_epsg() == 32633

    @pytest.mark.parametrize("window_size", [4096, 64])
    def test_geographic_square(self, window_size: int, tmp_path: Path) -> None:
        mask = np.zeros((300, 300), np.uint8)
        mask[50:250, 50:250] = 1  # 200 px of 1e-4 degrees = 0.02 degrees; 64-px windows: 5x5 pieces
        path = write_mask(tmp_path / "mask.tif", mask, crs="EPSG:4326", transform=GEO_TRANSFORM)
        count, total = write_polygons(path, tmp_path / "water.gpkg", window_size=window_size)
        frame = gpd.read_file(tmp_path / "water.gpkg", layer="water")
        assert count == 1 and frame.crs.to_epsg() == 4326
        expected = 0.02 * M_PER_DEG_LON * 0.02 * M_PER_DEG_LAT
        assert frame.area_m2[0] == pytest.approx(expected, rel=0.01)
        assert total == pytest.approx(expected, rel=0.01)
        assert frame.perimeter_m[0] == pytest.approx(2 * 0.02 * (M_PER_DEG_LON + M_PER_DEG_LAT), rel=0.01)
        np.testing.assert_allclose(frame.total_bounds, [30.005, 0.025, 30.025, 0.045])

    def test_written_in_batches(self, noisy_mask: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(vectorize, "FLUSH_VERTICES", 400)  # many appends to the layer
        path = write_mask(tmp_path / "mask.tif", noisy_mask)
        count, total = write_polygons(path, tmp_path / "water.gpkg", window_size=48)
        assert pyogrio.list_layers(tmp_path / "water.gpkg").tolist() == [[LAYER, "Polygon"]]
        frame = gpd.read_file(tmp_path / "water.gpkg", layer="water")
        assert count == len(frame) == components(noisy_mask, 4)
        pixel_polygons, transform, _ = mask_polygons(path)
        assert normalized(frame.geometry.array) == normalized(to_map(pixel_polygons, transform))
        np.testing.assert_allclose(frame.area_m2, frame.geometry.area)
        np.testing.assert_allclose(frame.perimeter_m, frame.geometry.length)
        assert total == pytest.approx((noisy_mask == 1).sum() * 4.0)
        assert not leftovers(tmp_path)

    def test_simplify(self, tmp_path: Path) -> None:
        path = write_mask(tmp_path / "mask.tif", disc((200, 200), (100, 100), 80).astype(np.uint8))
        write_polygons(path, tmp_path / "raw.gpkg")
        write_polygons(path, tmp_path / "simple.gpkg", simplify=4.0)
        raw = gpd.read_file(tmp_path / "raw.gpkg", layer="water").geometry[0]
        simple = gpd.read_file(tmp_path / "simple.gpkg", layer="water").geometry[0]
        assert shapely.get_num_coordinates(simple) < shapely.get_num_coordinates(raw) / 3
        assert simple.area == pytest.approx(raw.area, rel=0.02)

    @pytest.mark.filterwarnings("ignore:'crs' was not provided")
    def test_without_crs(self, tmp_path: Path) -> None:
        mask = np.zeros((30, 30), np.uint8)
        mask[5:10, 5:10] = 1
        path = write_mask(tmp_path / "mask.tif", mask, crs=None)
        count, total = write_polygons(path, tmp_path / "water.gpkg")
        frame = gpd.read_file(tmp_path / "water.gpkg", layer="water")
        assert count == 1 and total is None
        assert frame.crs is None and frame.area_m2.isna().all()
        assert frame.geometry[0].area == 25  # pixel units


def test_to_map_with_rotation_and_shear() -> None:
    """Every coefficient of a rotated / sheared geotransform is applied: ``(x, y) -> transform * (x, y)``."""
    transform = Affine(2.0, 0.5, 100.0, 0.25, -3.0, 50.0)
    square = shapely.Polygon([(0, 0), (4, 0), (4, 2), (0, 2)])
    (mapped,) = to_map([square], transform)
    expected = [transform @ xy for xy in square.exterior.coords]
    np.testing.assert_allclose(np.asarray(mapped.exterior.coords), expected)
    (plain,) = to_map([square], Affine(2.0, 0.0, 100.0, 0.0, -3.0, 50.0))
    np.testing.assert_allclose(np.asarray(plain.exterior.coords), [(100, 50), (108, 50), (108, 44), (100, 44), (100, 50)])


def test_area_in_a_foot_based_crs_is_in_metres() -> None:
    """EPSG:2227 (US survey feet): one square of 1000 ft sides is 92 903.6 m², perimeter 1219.2 m."""
    square = np.asarray([shapely.box(0, 0, 1000, 1000)], dtype=object)
    area, perimeter = area_perimeter_m(square, "EPSG:2227")
    foot = 1200 / 3937
    assert area[0] == pytest.approx((1000 * foot) ** 2) and perimeter[0] == pytest.approx(4000 * foot)


def test_simplify_below_one_pixel(tmp_path: Path) -> None:
    """A tolerance under one CRS unit still simplifies: the corners of a staircase of 0.5 m pixels
    lie 0.35 m off its diagonal, within 0.5 m."""
    mask = np.zeros((40, 40), np.uint8)
    for r in range(30):
        mask[5 + r, 5 : 6 + r] = 1  # a triangle with a one-pixel staircase hypotenuse
    path = write_mask(tmp_path / "mask.tif", mask, transform=Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 5600000.0))
    write_polygons(path, tmp_path / "raw.gpkg")
    write_polygons(path, tmp_path / "simple.gpkg", simplify=0.5)
    raw = gpd.read_file(tmp_path / "raw.gpkg", layer="water").geometry[0]
    simple = gpd.read_file(tmp_path / "simple.gpkg", layer="water").geometry[0]
    assert shapely.get_num_coordinates(simple) < shapely.get_num_coordinates(raw) / 4
