"""Polygons traced by windows (:mod:`samgeo_pipeline.outputs.polygon_trace`): one valid Polygon per
4-connected water region, the same for any window layout (issue 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage

from samgeo_pipeline.outputs import polygon_trace
from samgeo_pipeline.outputs.vectorize import mask_polygons
from tests.scenes import UTM_TRANSFORM, write_raster


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
