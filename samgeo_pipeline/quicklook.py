"""``quicklook.png``: the image (as SAM saw it) with the water outlined, from decimated reads."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from samgeo_pipeline.radiometry import ImageStats, to_rgb8
from samgeo_pipeline.raster import RasterInfo, decimated_shape, read_decimated
from samgeo_pipeline.writers import MASK_NODATA, atomic_path

OUTLINE_RGB = (255, 40, 200)


def write_quicklook(info: RasterInfo, stats: ImageStats, mask_path: Path, png_path: Path, max_side: int = 1024) -> Path:
    """Write a PNG (longest side ``max_side``) of the composite with water outlines in magenta.

    Nodata is shown dark grey. Memory is bounded by ``max_side``, whatever the raster size.
    """
    shape = decimated_shape(info.height, info.width, max_side)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(info.path) as ds:
            data, valid = read_decimated(ds, info, shape, Resampling.average)
        with rasterio.open(mask_path) as ms:
            mask = ms.read(1, out_shape=shape, resampling=Resampling.nearest)
    rgb = to_rgb8(data, valid, stats)
    rgb[mask == MASK_NODATA] = (48, 48, 48)
    contours, _ = cv2.findContours((mask == 1).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    rgb = np.ascontiguousarray(rgb)
    cv2.drawContours(rgb, contours, -1, OUTLINE_RGB, thickness=max(1, max(shape) // 512))
    with atomic_path(png_path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return png_path
