"""Polygons: one per 4-connected water region, traced by windows and dissolved, mapped to CRS units,
true areas, GeoPackage layer written in batches."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage

from samgeo_pipeline.outputs import polygon_trace, vectorize
from samgeo_pipeline.outputs.vectorize import LAYER, area_perimeter_m, mask_polygons, to_map, write_polygons
from tests.scenes import (
    GEO_TRANSFORM,
    M_PER_DEG_LAT,
    M_PER_DEG_LON,
    UTM_TRANSFORM,
    disc,
    leftovers,
    write_raster,
)


def write_mask(path: Path, mask: np.ndarray, crs: str | None = "EPSG:32633", transform: Affine = UTM_TRANSFORM) -> Path:
    """Single-band uint8 mask GeoTIFF (1 water, 0 dry, 255 nodata)."""
    return write_raster(path, mask.astype(np.uint8)[None], crs=crs, transform=transform, nodata=255)


def normalized(polygons: list[shapely.Polygon] | np.ndarray) -> list[bytes]:
    """The polygons as a sorted list of normalised WKB: equal lists = the same set of geometries."""
    return sorted(shapely.to_wkb(shapely.normalize(np.asarray(polygons, dtype=object))).tolist())


def components(mask: np.ndarray, connectivity: int) -> int:
    """Number of ``connectivity``-connected (4 or 8) components of the water (1) in ``mask``."""
    structure = np.ones((3, 3), bool) if connectivity == 8 else None
    return ndimage.label(mask == 1, structure=structure)[1]


@pytest.fixture
def noisy_mask() -> np.ndarray:
    """150x170 uint8 smoothed noise: 117 4-connected regions (87 8-connected), holes, nodata."""
    rng = np.random.default_rng(3)
    field = ndimage.gaussian_filter(rng.standard_normal((150, 170)), 1.2)
    mask = (field > 0).astype(np.uint8)
    mask[rng.random(mask.shape) < 0.01] = 255
    mask[:, :6] = 255
    return mask


@pytest.fixture
def lake_mask() -> np.ndarray:
    """100x100 uint8: a ring lake (outer r=30, island r=8) centred on (50, 50), a pond, nodata."""
    mask = (disc((100, 100), (50, 50), 30) & ~disc((100, 100), (50, 50), 8)).astype(np.uint8)
    mask[85:90, 5:12] = 1
    mask[:, 95:] = 255
    return mask


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


class TestPolygonRules:
    """One valid Polygon per 4-connected water region, the same for any window layout (issue 8)."""

    @pytest.mark.parametrize("window_size", [4096, 64, 37, 8])
    def test_count_is_4_connected_components(self, noisy_mask: np.ndarray, window_size: int, tmp_path: Path) -> None:
        path = write_mask(tmp_path / "m.tif", noisy_mask)
        polygons, _, _ = mask_polygons(path, window_size=window_size)
        n4, n8 = components(noisy_mask, 4), components(noisy_mask, 8)
        assert n4 > n8 + 20  # many regions touch others only at a corner: the rule matters here
        assert len(polygons) == n4
        geoms = np.asarray(polygons, dtype=object)
        assert shapely.is_valid(geoms).all()
        assert set(shapely.get_type_id(geoms).tolist()) == {shapely.GeometryType.POLYGON}
        # Each polygon burns back to exactly the pixels of one 4-connected region.
        burnt = features.rasterize(
            ((g, i + 1) for i, g in enumerate(polygons)), out_shape=noisy_mask.shape, transform=Affine.identity(),
            fill=0, dtype="int32",
        )  # fmt: skip
        np.testing.assert_array_equal(burnt > 0, noisy_mask == 1)
        labels, _ = ndimage.label(noisy_mask == 1)
        pairs = np.unique(np.stack([burnt[labels > 0], labels[labels > 0]]), axis=1)
        assert pairs.shape[1] == n4
        assert shapely.area(geoms).sum() == (noisy_mask == 1).sum()

    def test_same_polygons_for_any_window_size(self, noisy_mask: np.ndarray, tmp_path: Path) -> None:
        path = write_mask(tmp_path / "m.tif", noisy_mask)
        reference = normalized(mask_polygons(path, window_size=4096)[0])
        for window_size in (100, 64, 37, 16, 5):
            assert normalized(mask_polygons(path, window_size=window_size)[0]) == reference, window_size

    def test_region_across_window_borders_is_one_polygon(self, tmp_path: Path) -> None:
        # A comb: its three teeth lie in windows of their own and join only through the back, in
        # other windows. Island A (rows 44-51) straddles the border x=64, so each window sees it as a
        # notch and only the dissolve closes it into a hole; island B lies inside one window.
        mask = np.zeros((96, 96), np.uint8)
        mask[8:88, 8:16] = 1
        for r in (8, 40, 72):
            mask[r : r + 16, 8:88] = 1
        mask[44:52, 60:68] = 0
        mask[76:82, 20:26] = 0
        path = write_mask(tmp_path / "m.tif", mask)
        (whole,), _, _ = mask_polygons(path, window_size=4096)
        (tiled,), _, _ = mask_polygons(path, window_size=32)  # 3x3 windows
        assert tiled.geom_type == "Polygon" and tiled.is_valid
        assert len(tiled.interiors) == 2
        assert tiled.area == (mask == 1).sum()
        assert normalized([tiled]) == normalized([whole])
        # no vertex is left on the window borders where the region goes straight across them
        assert shapely.get_num_coordinates(tiled) == shapely.get_num_coordinates(whole)

    @pytest.mark.parametrize(
        "corner", [(10, 10), (32, 20), (20, 32), (32, 32)], ids=["inside", "row-border", "col-border", "window-corner"]
    )
    @pytest.mark.parametrize("anti", [False, True], ids=["diagonal", "anti-diagonal"])
    def test_corner_contact_gives_two_polygons(self, corner: tuple[int, int], anti: bool, tmp_path: Path) -> None:
        # Two 6x6 squares meeting only at the pixel corner (row, col): inside a window, on a border
        # between two windows, or where four windows meet. The same two polygons everywhere.
        r, c = corner
        mask = np.zeros((64, 64), np.uint8)
        if anti:
            mask[r - 6 : r, c : c + 6] = 1
            mask[r : r + 6, c - 6 : c] = 1
        else:
            mask[r - 6 : r, c - 6 : c] = 1
            mask[r : r + 6, c : c + 6] = 1
        polygons, _, _ = mask_polygons(write_mask(tmp_path / "m.tif", mask), window_size=32)
        assert len(polygons) == 2
        assert all(p.geom_type == "Polygon" and p.is_valid and p.area == 36 for p in polygons)
        assert polygons[0].intersection(polygons[1]).equals(shapely.Point(c, r))

    def test_holes_meeting_at_corners_stay_in_one_valid_polygon(self, tmp_path: Path) -> None:
        # Water all around land pixels that touch each other only at corners: each land pixel is a
        # hole of the one region; the anti-diagonal chain crosses the window border at row 20.
        mask = np.ones((40, 40), np.uint8)
        for k in range(5):
            mask[10 + k, 10 + k] = 0
        for k in range(6):
            mask[17 + k, 30 - k] = 0
        path = write_mask(tmp_path / "m.tif", mask)
        (whole,), _, _ = mask_polygons(path, window_size=4096)
        (tiled,), _, _ = mask_polygons(path, window_size=20)
        assert tiled.is_valid and len(tiled.interiors) == 11 and tiled.area == (mask == 1).sum()
        assert normalized([tiled]) == normalized([whole])

    def test_regions_are_handed_over_when_final(self, tmp_path: Path) -> None:
        # A region is handed over as soon as no window still to read can reach it, not at the end:
        # the pieces waiting for a neighbour are all that is held.
        mask = np.zeros((96, 64), np.uint8)
        mask[4:60, 4:10] = 1  # crosses the border between windows (0, 0) and (1, 0)
        mask[5:9, 40:44] = 1  # inside window (0, 1)
        mask[70:90, 40:50] = 1  # inside window (2, 1)
        path = write_mask(tmp_path / "m.tif", mask)

        class CountingReads:
            def __init__(self, ds: rasterio.io.DatasetReader) -> None:
                self.ds, self.height, self.width, self.reads = ds, ds.height, ds.width, 0

            def read(self, *args: object, **kwargs: object) -> np.ndarray:
                self.reads += 1
                return self.ds.read(*args, **kwargs)

        with rasterio.open(path) as ds:
            counting = CountingReads(ds)
            batches = polygon_trace.polygon_batches(counting, 32)
            seen = [(counting.reads, sorted(shapely.area(batch).tolist())) for batch in batches]
        assert seen == [(2, [16.0]), (3, [336.0]), (6, [200.0])]  # (windows read so far, areas)

    def test_window_size_must_be_at_least_2(self, lake_mask: np.ndarray, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="window_size"):
            mask_polygons(write_mask(tmp_path / "m.tif", lake_mask), window_size=1)


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


def test_same_polygons_for_tiny_windows_on_a_small_mask(tmp_path: Path) -> None:
    """The window-layout rule on a small noisy mask (cheap enough for mutation testing), down to
    the smallest window allowed: holes, corner-touching regions and regions across many borders."""
    rng = np.random.default_rng(11)
    mask = (ndimage.uniform_filter(rng.random((37, 29)), 3) > 0.5).astype(np.uint8)
    mask[10:30, 3:20] = 1
    mask[15:20, 8:12] = 0  # a hole inside a region that spans several windows
    path = write_mask(tmp_path / "m.tif", mask)
    reference = normalized(mask_polygons(path, window_size=4096)[0])
    assert len(reference) == components(mask, 4)
    for window_size in (2, 3, 7, 16):
        assert normalized(mask_polygons(path, window_size=window_size)[0]) == reference, window_size
    with pytest.raises(ValueError, match="window_size must be at least 2, got 1"):
        mask_polygons(path, window_size=1)
