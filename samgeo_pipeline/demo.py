"""A small synthetic scene with known water, so the pipeline can run on a fresh, offline machine.

The scene is a 4-band (R, G, B, NIR) uint8 GeoTIFF, NAIP-like: a meandering river, round lakes
(one large enough to span several tiles), textured land, and a nodata margin on the left edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from samgeo_pipeline.io.atomic import atomic_path


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
    land = [(95, 110, 80, 170), (60, 80, 95, 30)]  # R, G, B, NIR of land and of water
    for b in range(4):
        bands[b] = np.where(water, land[1][b], land[0][b]) + texture
    image = np.clip(bands, 1, 255).astype(np.uint8)
    image[:, nodata] = 0
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 4,
        "dtype": "uint8",
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    if crs is not None:
        profile["crs"] = CRS.from_user_input(crs)
        profile["transform"] = transform or Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 5600000.0)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(image)
            dst.descriptions = ("red", "green", "blue", "nir")
    return path
