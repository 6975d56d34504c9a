"""A small synthetic scene with known water, so the pipeline can run on a fresh, offline machine;
and the one writer of synthetic GeoTIFFs (this scene, the tests' rasters, the benchmarks' scenes).

The scene is a 4-band (R, G, B, NIR) uint8 GeoTIFF, NAIP-like: a meandering river, round lakes
(one large enough to span several tiles), textured land, and a nodata margin on the left edge.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.io import DatasetWriter
from rasterio.transform import Affine

from samgeo_pipeline.errors import ignore_rasterio_georeference_warnings
from samgeo_pipeline.io.atomic import atomic_path

ignore_rasterio_georeference_warnings()

#: R, G, B, NIR of land in the synthetic scenes (demo, tests, benchmarks).
LAND_RGBN = (95, 110, 80, 170)
#: R, G, B, NIR of water in the synthetic scenes.
WATER_RGBN = (60, 80, 95, 30)


@contextmanager
def geotiff_writer(
    path: str | Path,
    count: int,
    height: int,
    width: int,
    dtype: str,
    *,
    crs: str | CRS | None = "EPSG:32633",
    transform: Affine | None = None,
    nodata: float | None = 0,
    block_size: int = 256,
    compress: str | None = "deflate",
    descriptions: Sequence[str] | None = None,
    **profile: Any,
) -> Iterator[DatasetWriter]:
    """An open, tiled GeoTIFF to write into (whole or by windows), renamed into place at the end
    (:func:`~samgeo_pipeline.io.atomic.atomic_path`).

    Args:
        path: output GeoTIFF (its folder is created).
        count, height, width, dtype: bands, size in pixels, data type.
        crs: CRS; ``None`` writes a raster without georeferencing (``transform`` ignored).
        transform: geotransform of the pixels.
        nodata: the nodata tag (``None``: none).
        block_size: side of the tiles.
        compress: compression, or ``None`` for none.
        descriptions: band descriptions (band names), set after the data.
        profile: further creation options; they override the ones above.
    """
    options: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype, "nodata": nodata,
        "tiled": True, "blockxsize": block_size, "blockysize": block_size,
    }  # fmt: skip
    if compress:
        options["compress"] = compress
    if crs is not None:
        options["crs"] = CRS.from_user_input(crs)
        options["transform"] = transform
    options.update(profile)
    with atomic_path(Path(path)) as tmp, rasterio.open(tmp, "w", **options) as dst:
        yield dst
        if descriptions is not None:
            dst.descriptions = tuple(descriptions)


def write_geotiff(path: str | Path, data: np.ndarray, **options: Any) -> Path:
    """Write ``data`` (``(bands, rows, cols)``) with :func:`geotiff_writer` (same ``options``) and
    return the path."""
    count, height, width = data.shape
    with geotiff_writer(path, count, height, width, data.dtype.name, **options) as dst:
        dst.write(data)
    return Path(path)


def demo_water(height: int, width: int) -> np.ndarray:
    """Known water of the demo scene: ``bool (height, width)``, True = water (before nodata)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    centre = height * 0.5 + height * 0.18 * np.sin(cols / width * 3.0 * np.pi)
    half_width = 12 + 6 * np.sin(cols / 97.0)
    water: np.ndarray = np.abs(rows - centre) < half_width
    lakes = [(0.22, 0.30, 0.13), (0.80, 0.72, 0.08), (0.78, 0.18, 0.05)]
    for fy, fx, fr in lakes:
        water |= (rows - fy * height) ** 2 + (cols - fx * width) ** 2 < (fr * min(height, width)) ** 2
    return water


def demo_nodata(height: int, width: int) -> np.ndarray:
    """Nodata margin of the demo scene: ``bool (height, width)``, True = no data (left 5 %)."""
    margin = np.zeros((height, width), bool)
    margin[:, : max(1, width // 20)] = True
    return margin


def write_demo_scene(
    path: str | Path,
    height: int = 1500,
    width: int = 2000,
    crs: str | CRS | None = "EPSG:32633",
    transform: Affine | None = None,
    seed: int = 0,
) -> Path:
    """Write the demo scene (nodata = 0) and return its path.

    Args:
        path: output GeoTIFF.
        height, width: size in pixels.
        crs: CRS (``None`` writes a raster without georeferencing).
        transform: geotransform; default 2 m pixels with the origin at (500000, 5600000).
        seed: noise seed.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    water = demo_water(height, width)
    nodata = demo_nodata(height, width)
    texture = rng.normal(0, 6, (height, width)).astype(np.float32)
    bands = np.empty((4, height, width), np.float32)
    for b in range(4):
        bands[b] = np.where(water, WATER_RGBN[b], LAND_RGBN[b]) + texture
    image = np.clip(bands, 1, 255).astype(np.uint8)
    image[:, nodata] = 0
    transform = transform or Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 5600000.0)
    return write_geotiff(path, image, crs=crs, transform=transform, descriptions=("red", "green", "blue", "nir"))


__all__ = ["LAND_RGBN", "WATER_RGBN", "geotiff_writer", "write_geotiff", "demo_water", "demo_nodata", "write_demo_scene"]
