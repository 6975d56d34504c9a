"""Nodata the file does not tag: a collar of exact zeros around the image's footprint.

Arrays as in :mod:`samgeo_pipeline.io.raster`: ``float32 (bands, rows, cols)`` data and a
``bool (rows, cols)`` validity mask.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from samgeo_pipeline.io.raster import RasterInfo, nodata_valid

ZERO_COLLAR_MIN_BORDER_SHARE = 0.01
"""Share of the image's outer ring of pixels that must be 0 in every mapped band for a zero collar."""


def with_zero_collar(info: RasterInfo, data: np.ndarray, valid: np.ndarray) -> tuple[RasterInfo, np.ndarray, float]:
    """Nodata the file does not tag: a collar of exact zeros touching the image border.

    Landsat L1 scenes, reprojected or padded rasters often fill the area outside the footprint
    with 0 in every band and tag no nodata; read as data, the fill is dark, smooth "water" and
    drags every percentile down. When the file has no nodata and no mask (and ``--nodata`` was not
    given), a whole-image read (the decimated statistics read) is checked: if at least
    :data:`ZERO_COLLAR_MIN_BORDER_SHARE` (1 %) of its outer ring of pixels is 0 in every mapped
    band, 0 becomes the nodata value of the whole run, under the per-band rule of
    :func:`~samgeo_pipeline.io.raster.nodata_valid` (a pixel is nodata where all its mapped bands are 0).

    Why the border ring: fill covers whole runs of it (a Landsat L1 footprint, turned inside its
    frame, touches the frame at four points only, so nearly all of the ring is fill; a padded or
    reprojected raster's fill runs along whole sides or corners), while exact zeros in every band
    of real imagery are isolated pixels (shadows clipped to black in 8-bit data); 1 % of the ring
    of a 2048² read is about 80 pixels. Looking at the ring only costs
    O(rows + cols), so an image without a collar pays nothing. Why mapped bands, not every band of
    the file: they are the bands validity is judged on everywhere else, and a band stacked beside
    the data need not be 0 on fill (Landsat's QA_PIXEL marks fill with 1), which would hide the
    collar. Every all-zero pixel becomes nodata, inside the footprint too, not only those connected
    to the collar: the tiles are read one by one and cannot tell, and a pixel at exactly 0 in
    every mapped band is not a measurement in real imagery (NAIP's deep water keeps red, green
    and blue where its NIR is 0, so it stays valid).

    Args:
        info: the raster's info; returned unchanged when it has a nodata value or a mask.
        data: ``float32 (bands, rows, cols)``: the mapped bands of the whole image (decimated).
        valid: ``bool (rows, cols)`` of ``data``.

    Returns:
        ``(info, valid, share)``: with a collar, ``info`` with ``nodata=0`` and ``nodata_source``
        ``"zero collar"`` and ``valid`` without the all-zero pixels; else both unchanged. ``share``:
        the share of the ring that is 0 in every band.
    """
    if info.nodata is not None or info.has_mask or data.size == 0:
        return info, valid, 0.0
    share = zero_border_share(data, valid)
    if share < ZERO_COLLAR_MIN_BORDER_SHARE:
        return info, valid, share
    collared = dataclasses.replace(info, nodata=0.0, nodata_source="zero collar")
    return collared, valid & nodata_valid(data, 0.0), share


def zero_border_share(data: np.ndarray, valid: np.ndarray) -> float:
    """Share of the outer ring of pixels of ``data`` (``(bands, rows, cols)``) that is valid and 0 in every band."""
    rows, cols = valid.shape
    between = np.arange(1, rows - 1)  # rows of the left and right sides, between the top and the bottom
    r = np.concatenate([np.zeros(cols, np.intp), np.full(cols, rows - 1), between, between])
    c = np.concatenate([np.arange(cols), np.arange(cols), np.zeros_like(between), np.full_like(between, cols - 1)])
    ring = np.unique(r * cols + c)  # one row or one column: opposite sides coincide
    r, c = np.divmod(ring, cols)
    zero = valid[r, c] & (data[:, r, c] == 0).all(axis=0)
    return float(zero.mean())


def zero_collar_message(path: str | os.PathLike[str], share: float) -> str:
    """What a run that found a zero collar (:func:`with_zero_collar`) is warned with."""
    return (
        f"{path}: no nodata tagged, but {share:.0%} of the image border is 0 in every mapped band (a fill collar): "
        "pixels 0 in every mapped band are read as nodata; pass --no-zero-collar (YAML zero_collar: false) "
        "if they are data"
    )
