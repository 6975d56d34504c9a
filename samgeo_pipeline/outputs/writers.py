"""Raster outputs written by windows to a temporary file, finished as a COG and renamed.

A crash never leaves a half-written file under its final name: every output is built as
``.NAME.partial-*`` in the destination folder and moved into place
(:func:`samgeo_pipeline.io.atomic.atomic_path`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from samgeo_pipeline.errors import OutputWriteError, first_line, ignore_rasterio_georeference_warnings
from samgeo_pipeline.io.atomic import atomic_path, no_space_error

ignore_rasterio_georeference_warnings()  # outputs of inputs without georeferencing have none either

MASK_NODATA = 255
"""Value of ``mask.tif`` where the input has no data (1 water, 0 not water)."""


class GridLike(Protocol):
    """What an output grid needs: a :class:`~samgeo_pipeline.io.raster.RasterInfo`, or the grid of ``change``."""

    # Read-only properties: RasterInfo and the change grid are frozen dataclasses.
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def crs(self) -> CRS | None: ...
    @property
    def transform(self) -> Affine: ...


class WindowedRasterWriter:
    """Single-band output on the input's grid, written window by window, finished as a COG.

    Args:
        info: the input raster, or any grid (CRS, transform and size are copied).
        final: final path of the COG.
        dtype: ``uint8`` (mask) or ``float32`` (probability).
        nodata: nodata value of the output.

    Raises:
        OutputWriteError: the work file cannot be created (nothing is left behind).
    """

    def __init__(self, info: GridLike, final: Path, dtype: str, nodata: float) -> None:
        self.final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.work-", suffix=".tif", dir=final.parent)
        os.close(fd)
        self.work = Path(name)
        # The work file is temporary and uncompressed (GTiff's default), so the tile loop spends no
        # time compressing; the COG copy compresses on all cores. Its 512² blocks are the COG's.
        try:
            self._ds = rasterio.open(
                self.work, "w", driver="GTiff", width=info.width, height=info.height, count=1, dtype=dtype,
                nodata=nodata, crs=info.crs, transform=info.transform, tiled=True, blockxsize=512, blockysize=512,
            )  # fmt: skip
        except BaseException as exc:
            self.work.unlink()
            if not isinstance(exc, (RasterioError, OSError)):
                raise
            raise OutputWriteError(
                f"{final}: cannot create the work file ({first_line(exc)}); check the free space and permissions there"
            ) from None

    def write(self, array: np.ndarray, window: Window) -> None:
        """Write ``array`` (``(rows, cols)``, the output dtype) at ``window`` (source pixels)."""
        self._ds.write(array, 1, window=window)

    def close(self) -> Path:
        """Close the work file (idempotent); returns its path: every window written is then readable there.

        Raises:
            OutputWriteError: the work file is shorter than its blocks: a write failed (GDAL writes
                cached blocks from whichever thread evicts them, and a failed flush is printed,
                never raised); a full disk is named as such (:func:`~samgeo_pipeline.io.atomic.no_space_error`).
        """
        if not self._ds.closed:
            blocks = self._ds.block_shapes[0]
            rows, cols = -(-self._ds.height // blocks[0]), -(-self._ds.width // blocks[1])
            need = rows * cols * blocks[0] * blocks[1] * np.dtype(self._ds.dtypes[0]).itemsize
            self._ds.close()
            size = self.work.stat().st_size
            if size < need:
                raise no_space_error(self.final) or OutputWriteError(
                    f"{self.final}: the work file holds {size} of its {need} bytes of blocks (a write failed); "
                    "check the disk there"
                )
        return self.work

    def make_cog(self, overview_resampling: str) -> Path:
        """Close, convert to a Cloud-Optimized GeoTIFF and move it to its final name; returns that path.

        The COG driver's defaults give 512² blocks and overviews down to one block;
        ``overview_resampling`` is GDAL's name (``nearest`` for masks, ``average`` for
        probabilities). ``BIGTIFF=IF_SAFER``: the default (``IF_NEEDED``) judges by the uncompressed
        size and never picks BigTIFF for a compressed file, which may still pass 4 GiB. The work
        file stays (others may still read it) until :meth:`remove_work`.
        """
        self.close()
        with atomic_path(self.final) as tmp:
            rasterio.shutil.copy(
                self.work, tmp, driver="COG", COMPRESS="DEFLATE", OVERVIEW_RESAMPLING=overview_resampling,
                BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
            )  # fmt: skip
        return self.final

    def remove_work(self) -> None:
        """Close and delete the work file (after an error, or once it is no longer read)."""
        if not self._ds.closed:
            self._ds.close()
        self.work.unlink(missing_ok=True)
