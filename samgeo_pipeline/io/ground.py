"""The ground size of a source pixel: CRS units, metres (``--gsd``'s unit on every CRS)."""

from __future__ import annotations

import math

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.io.raster import RasterInfo


def source_resolution(info: RasterInfo) -> float:
    """Pixel size in CRS units (mean of x and y; 1.0 for pixel coordinates)."""
    return float((abs(info.transform.a) + abs(info.transform.e)) / 2) if info.georeferenced else 1.0


def pixel_size_m(info: RasterInfo) -> tuple[float, float]:
    """``(height, width)`` of a source pixel in metres, the unit of ``--gsd`` on every CRS.

    Projected CRS: the pixel's sides times the CRS's metres per unit. Geographic CRS: the degrees
    of one pixel measured on the CRS's ellipsoid at the raster's centre (a degree of longitude
    shrinks with latitude, so the two sides differ). Without georeferencing ``(1.0, 1.0)``:
    ``--gsd`` is then in source pixels.

    Raises:
        InputError: the CRS's units cannot be converted to metres, or its centre is off the globe.
    """
    if not info.georeferenced:
        return 1.0, 1.0
    from pyproj import CRS as ProjCRS
    from pyproj import Geod

    t = info.transform
    deg_h, deg_w = math.hypot(t.b, t.e), math.hypot(t.a, t.d)  # a pixel's sides in CRS units
    assert info.crs is not None  # georeferenced
    proj = ProjCRS.from_user_input(info.crs.to_wkt())
    if proj.is_geographic:
        lon, lat = t @ (info.width / 2, info.height / 2)
        geod = proj.get_geod() or Geod(ellps="WGS84")
        size = (geod.inv(lon, lat - deg_h / 2, lon, lat + deg_h / 2)[2] if abs(lat) < 90 else math.nan,
                geod.inv(lon - deg_w / 2, lat, lon + deg_w / 2, lat)[2] if abs(lat) < 90 else math.nan)  # fmt: skip
    else:
        factor = proj.axis_info[0].unit_conversion_factor if proj.axis_info else math.nan
        size = (deg_h * factor, deg_w * factor)
    if not all(math.isfinite(v) and v > 0 for v in size):
        raise InputError(
            f"{info.path}: --gsd is in metres, and the pixel size of this raster in {info.crs} cannot be "
            "converted to metres (unknown units, or a centre off the globe); run it without --gsd"
        )
    return size


def gsd_note(info: RasterInfo, gsd: float | None) -> str | None:
    """What ``--gsd`` became on a geographic CRS (degrees per working pixel at the centre), else None."""
    if gsd is None or not info.georeferenced:
        return None
    assert info.crs is not None  # georeferenced
    if not info.crs.is_geographic:
        return None
    (h, w), t = pixel_size_m(info), info.transform
    lat = (t @ (info.width / 2, info.height / 2))[1]
    deg_h, deg_w = gsd * math.hypot(t.b, t.e) / h, gsd * math.hypot(t.a, t.d) / w
    return (
        f"{info.path}: --gsd {gsd:g} is in metres; {info.crs} is in degrees, so a working pixel is "
        f"{deg_h:.4g} x {deg_w:.4g} degrees (lat x lon), converted at the raster's centre latitude {lat:.3f}"
    )
