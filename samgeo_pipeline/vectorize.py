"""Water polygons from ``mask.tif``, vectorised by windows and dissolved across window borders.

Shapes are traced in *pixel coordinates* (integer vertex positions, exact), so pieces of one lake
from neighbouring windows share identical edges and dissolve cleanly; the affine transform to map
coordinates is applied once at the end. Attributes ``area_m2`` and ``perimeter_m`` are true metres:
geodesic for geographic CRSs, scaled by the CRS's linear unit otherwise; unknown (NaN) without CRS.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from pyproj import CRS as ProjCRS
from pyproj import Geod
from rasterio import features
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from rasterio.windows import Window
from shapely.geometry import shape

from samgeo_pipeline.writers import atomic_path

LAYER = "water"


def mask_polygons(mask_path: Path, window_size: int = 4096) -> tuple[list[shapely.Polygon], Affine, object]:
    """Water polygons of a mask GeoTIFF (value 1), in pixel coordinates, dissolved across windows.

    Args:
        mask_path: single-band uint8 mask (1 water).
        window_size: side of the windows read at once.

    Returns:
        ``(polygons, transform, crs)``: polygons with ``(col, row)`` pixel-corner coordinates, the
        mask's transform and CRS.
    """
    inner: list[shapely.Polygon] = []
    border: list[shapely.Polygon] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        ds = rasterio.open(mask_path)
    with ds:
        height, width = ds.height, ds.width
        for r0 in range(0, height, window_size):
            for c0 in range(0, width, window_size):
                win = Window(c0, r0, min(window_size, width - c0), min(window_size, height - r0))
                block = ds.read(1, window=win)
                water = block == 1
                if not water.any():
                    continue
                r1, c1 = r0 + int(win.height), c0 + int(win.width)
                # Polygonize only the water's bounding box: GDAL's cost grows with the pixels scanned.
                rows, cols = np.flatnonzero(water.any(axis=1)), np.flatnonzero(water.any(axis=0))
                box = water[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
                for geom, _ in features.shapes(
                    box.view(np.uint8), mask=box, connectivity=8, transform=Affine.translation(c0 + cols[0], r0 + rows[0])
                ):
                    poly = shape(geom)
                    x0, y0, x1, y1 = poly.bounds
                    touches = (x0 == c0 > 0) or (y0 == r0 > 0) or (x1 == c1 < width) or (y1 == r1 < height)
                    (border if touches else inner).append(poly)
        transform, crs = ds.transform, ds.crs
    if border:
        merged = shapely.union_all(border)
        inner.extend(shapely.get_parts(merged).tolist())
    return inner, transform, crs


def to_map(polygons: list[shapely.Polygon], transform: Affine) -> np.ndarray:
    """Apply the affine ``transform`` to pixel-coordinate polygons; returns an array of geometries."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    matrix = np.array([[a, b], [d, e]])
    offset = np.array([c, f])
    return shapely.transform(np.asarray(polygons, dtype=object), lambda xy: xy @ matrix.T + offset)


def area_perimeter_m(geoms: np.ndarray, crs: object) -> tuple[np.ndarray, np.ndarray]:
    """Area (m²) and perimeter (m) of each geometry: geodesic for geographic CRSs, NaN without CRS."""
    n = len(geoms)
    if crs is None or n == 0:
        return np.full(n, np.nan), np.full(n, np.nan)
    proj = ProjCRS.from_user_input(crs)
    if proj.is_geographic:
        geod = proj.get_geod() or Geod(ellps="WGS84")
        values = [geod.geometry_area_perimeter(g) for g in geoms]
        return np.array([abs(a) for a, _ in values]), np.array([p for _, p in values])
    unit = proj.axis_info[0].unit_conversion_factor if proj.axis_info else 1.0
    return shapely.area(geoms) * unit**2, shapely.length(geoms) * unit


def write_polygons(mask_path: Path, gpkg_path: Path, simplify: float = 0.0) -> tuple[int, float | None]:
    """Vectorise ``mask_path`` into layer ``water`` of ``gpkg_path`` (input CRS).

    Returns:
        ``(polygon count, total area in m²)``; the area is None without a CRS.

    An all-dry mask gives a valid, empty layer. Written to a temporary name and renamed.
    """
    polygons, transform, crs = mask_polygons(mask_path)
    geoms = to_map(polygons, transform)
    if simplify > 0 and len(geoms):
        geoms = shapely.simplify(geoms, simplify, preserve_topology=True)
    area, perimeter = area_perimeter_m(geoms, crs)
    frame = gpd.GeoDataFrame(
        {"area_m2": area.astype(float), "perimeter_m": perimeter.astype(float)},
        geometry=gpd.GeoSeries(list(geoms), crs=crs),
    )
    with atomic_path(gpkg_path) as tmp:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="'crs' was not provided")  # pixel coordinates
            frame.to_file(tmp, layer=LAYER, driver="GPKG", engine="pyogrio", geometry_type="Polygon")
    return len(frame), (float(area.sum()) if crs is not None else None)
