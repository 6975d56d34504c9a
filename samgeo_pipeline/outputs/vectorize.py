"""Water polygons from ``mask.tif`` into ``water.gpkg``: traced by windows
(:mod:`samgeo_pipeline.outputs.polygon_trace`: one valid Polygon per 4-connected water region),
written as they become final.

Features are written to the GeoPackage in batches as they are final. Coordinates are mapped to the
CRS by the mask's affine transform (exact pixel corners). Attributes ``area_m2`` and
``perimeter_m`` are true metres: geodesic for geographic CRSs, scaled by the CRS's linear unit
otherwise; unknown (NaN) without CRS.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import shapely
from pyproj import CRS as ProjCRS
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.transform import Affine

from samgeo_pipeline.io.atomic import atomic_path
from samgeo_pipeline.io.gdal_env import gdal_env
from samgeo_pipeline.outputs.polygon_trace import WINDOW_SIZE, polygon_batches

# pyogrio warns when a layer without a CRS (pixel coordinates) is written; the pipeline says that
# once per image itself. Filtered once at import: catch_warnings() is not thread-safe.
warnings.filterwarnings("ignore", message="'crs' was not provided")

LAYER = "water"
FLUSH_VERTICES = 2_000_000
"""Final polygons are written to the GeoPackage once they hold this many vertices."""


def mask_polygons(mask_path: Path, window_size: int = WINDOW_SIZE) -> tuple[list[shapely.Polygon], Affine, object]:
    """Water polygons of a mask GeoTIFF (value 1), in pixel coordinates (all in memory; see the rule).

    Args:
        mask_path: single-band uint8 mask (1 water).
        window_size: side of the windows read at once (the result does not depend on it).

    Returns:
        ``(polygons, transform, crs)``: one polygon per 4-connected water region with ``(col, row)``
        pixel-corner coordinates, the mask's transform and CRS.
    """
    with gdal_env(), rasterio.open(mask_path) as ds:
        polygons = [p for batch in polygon_batches(ds, window_size) for p in batch.tolist()]
        return polygons, ds.transform, ds.crs


def to_map(polygons: list[shapely.Polygon] | np.ndarray, transform: Affine) -> np.ndarray:
    """Apply the affine ``transform`` to pixel-coordinate polygons; returns an array of geometries."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        out = np.empty_like(xy)
        out[:, 0] = a * x + c if b == 0 else a * x + b * y + c
        out[:, 1] = e * y + f if d == 0 else d * x + e * y + f
        return out

    return shapely.transform(np.asarray(polygons, dtype=object), apply)


def area_perimeter_m(geoms: np.ndarray, crs: CRS | None) -> tuple[np.ndarray, np.ndarray]:
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


def _write_batch(
    path: Path, polygons: list[np.ndarray], transform: Affine, crs: CRS | None, simplify: float, append: bool
) -> tuple[int, float]:
    """Map, simplify, measure and write (or append) one batch of pixel-coordinate polygons."""
    geoms = to_map(np.concatenate(polygons) if polygons else np.empty(0, dtype=object), transform)
    if simplify > 0 and len(geoms):
        geoms = shapely.simplify(geoms, simplify, preserve_topology=True)
    area, perimeter = area_perimeter_m(geoms, crs)
    frame = gpd.GeoDataFrame(
        {"area_m2": area.astype(float), "perimeter_m": perimeter.astype(float)},
        geometry=gpd.GeoSeries(geoms, crs=crs),
    )
    pyogrio.write_dataframe(frame, path, layer=LAYER, driver="GPKG", geometry_type="Polygon", append=append)
    return len(frame), float(area.sum())


def write_polygons(
    mask_path: Path, gpkg_path: Path, simplify: float = 0.0, window_size: int = WINDOW_SIZE
) -> tuple[int, float | None]:
    """Vectorise ``mask_path`` into layer ``water`` of ``gpkg_path`` (input CRS), by windows.

    One valid Polygon per 4-connected water region (see the module docstring), written in batches
    as the regions become final, so memory does not grow with the number of polygons.

    Args:
        mask_path: ``mask.tif`` (uint8: 1 water, 0 not water, 255 nodata).
        gpkg_path: output GeoPackage.
        simplify: Douglas-Peucker tolerance in CRS units (topology-preserving, per polygon); 0: none.
        window_size: side of the windows read at once (the result does not depend on it).

    Returns:
        ``(polygon count, total area in m²)``; the area is None without a CRS.

    An all-dry mask gives a valid, empty layer. Written to a temporary name and renamed.
    """
    count, total = 0, 0.0
    # Every block of the mask is read once: not kept in GDAL's block cache where it can be avoided.
    with gdal_env(read_once=True), rasterio.open(mask_path) as ds, atomic_path(Path(gpkg_path)) as tmp:
        transform, crs = ds.transform, ds.crs
        batch: list[np.ndarray] = []
        vertices = 0
        written = False
        for polygons in polygon_batches(ds, window_size):
            batch.append(polygons)
            vertices += int(shapely.get_num_coordinates(polygons).sum())
            if vertices >= FLUSH_VERTICES:
                n, area = _write_batch(tmp, batch, transform, crs, simplify, append=written)
                count, total, written = count + n, total + area, True
                batch, vertices = [], 0
        if batch or not written:  # an all-dry mask still gets its (empty) layer
            n, area = _write_batch(tmp, batch, transform, crs, simplify, append=written)
            count, total = count + n, total + area
    return count, (total if crs is not None else None)
