"""Size limits of one input, checked from its header before any work (statistics, tiles, files).

A raster's header can claim any size: a 1 KB VRT or a sparse TIFF may say 10^6 x 10^6 pixels.
:func:`check_size` (before the input is even hashed) refuses, with a one-line message naming the
option that raises the limit:

- more pixels than ``max_pixels`` (``--max-pixels``) on the source grid (the outputs are written
  on it) or on the working grid (``--gsd``);
- more tiles than ``max_tiles`` (``--max-tiles``).

:func:`check_free_disk` (once the run is known to write, before the statistics are read) refuses
uncompressed work files (``mask.tif``, and ``probability.tif`` with ``--probability``) larger than
the free space of the output folder's disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import SizeLimitError
from samgeo_pipeline.raster import RasterInfo, source_resolution
from samgeo_pipeline.tiling import TileGrid, make_grid


def work_file_bytes(info: RasterInfo, config: SegmentConfig) -> int:
    """Bytes of the uncompressed work files of one run: uint8 mask, plus float32 probability."""
    return info.width * info.height * (1 + (4 if config.probability else 0))


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk of ``folder`` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_size(info: RasterInfo, config: SegmentConfig) -> TileGrid:
    """Check ``info`` against the pixel and tile limits of ``config``.

    Reads nothing but numbers already in ``info``, so a refused input costs no time.

    Returns:
        The tile grid of the run.

    Raises:
        SizeLimitError: a limit is exceeded; the message names the option that raises it.
    """
    path = info.path
    source_px = info.width * info.height
    scale = 1.0 if config.gsd is None else config.gsd / source_resolution(info)
    working_px = source_px / (scale * scale)
    if source_px > config.max_pixels:
        raise SizeLimitError(
            f"{path}: {info.width} x {info.height} pixels ({source_px:.3g}) exceed max_pixels={config.max_pixels:.3g}; "
            "if the raster really is that large, raise --max-pixels (YAML max_pixels)"
        )
    if working_px > config.max_pixels:
        raise SizeLimitError(
            f"{path}: --gsd {config.gsd} makes a working grid of {working_px:.3g} pixels, above "
            f"max_pixels={config.max_pixels:.3g}; choose a coarser --gsd (the file's is {source_resolution(info):.3g}) "
            "or raise --max-pixels"
        )
    grid = make_grid(info, config)
    if len(grid) > config.max_tiles:
        raise SizeLimitError(
            f"{path}: {len(grid)} tiles ({grid.rows} x {grid.cols}) exceed max_tiles={config.max_tiles}; "
            "use a larger --tile-size or a coarser --gsd, or raise --max-tiles (YAML max_tiles)"
        )
    return grid


def check_free_disk(info: RasterInfo, config: SegmentConfig, out_dir: Path) -> None:
    """Check that the uncompressed work files of ``info`` fit the free space of ``out_dir``'s disk.

    Raises:
        SizeLimitError: they do not; the message gives both sizes.
    """
    need, free = work_file_bytes(info, config), free_bytes(out_dir)
    if need > free:
        raise SizeLimitError(
            f"{info.path}: the work files need about {need / 1e9:.3g} GB but {out_dir} has {free / 1e9:.3g} GB free; "
            "free some space or write to another --out"
        )


__all__ = ["check_size", "check_free_disk", "work_file_bytes", "free_bytes"]
