"""Size limits of one input, checked from its header before any work (statistics, tiles, files).

A raster's header can claim any size: a 1 KB VRT or a sparse TIFF may say 10^6 x 10^6 pixels.
:func:`check_size` (before the input is even hashed) refuses, with a one-line message naming the
option that raises the limit:

- more pixels than ``max_pixels`` (``--max-pixels``) on the source grid (the outputs are written
  on it) or on the working grid (``--gsd``);
- more tiles than ``max_tiles`` (``--max-tiles``);
- a ``--gsd`` so coarse that the working grid has fewer than :data:`MIN_WORKING_SIDE` pixels on a side.

:func:`check_free_disk` (once the run is known to write, before the statistics are read) refuses
uncompressed work files (``mask.tif``, and ``probability.tif`` with ``--probability``) larger than
the free space of the output folder's disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from samgeo_pipeline.errors import SizeLimitError
from samgeo_pipeline.io.atomic import free_space
from samgeo_pipeline.io.ground import pixel_size_m
from samgeo_pipeline.io.raster import RasterInfo
from samgeo_pipeline.io.tiling import GridOptions, TileGrid, make_grid, working_size

#: Fewest working pixels ``--gsd`` may leave on a side (a raster narrower than this keeps its own).
MIN_WORKING_SIDE = 32


class LimitOptions(GridOptions, Protocol):
    """The options :func:`check_size` reads (limits, tiling); :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    # Read-only properties: the configs are frozen dataclasses.
    @property
    def max_pixels(self) -> float: ...
    @property
    def max_tiles(self) -> int: ...


class WorkFileOptions(Protocol):
    """The option :func:`work_file_bytes` reads; :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    @property
    def probability(self) -> bool: ...


def work_file_bytes(info: RasterInfo, config: WorkFileOptions) -> int:
    """Bytes of the uncompressed work files of one run: uint8 mask, plus float32 probability."""
    return info.width * info.height * (1 + (4 if config.probability else 0))


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk of ``folder`` (or of its nearest existing parent)."""
    return free_space(folder)


def check_size(info: RasterInfo, config: LimitOptions) -> TileGrid:
    """Check ``info`` against the pixel and tile limits of ``config``.

    Reads nothing but numbers already in ``info``, so a refused input costs no time.

    Returns:
        The tile grid of the run.

    Raises:
        SizeLimitError: a limit is exceeded; the message names the option that raises it.
    """
    path = info.path
    source_px = info.width * info.height
    rows, cols = working_size(info, config.gsd)
    working_px = rows * cols
    if source_px > config.max_pixels:
        raise SizeLimitError(
            f"{path}: {info.width} x {info.height} pixels ({source_px:.3g}) exceed max_pixels={config.max_pixels:.3g}; "
            "if the raster really is that large, raise --max-pixels (YAML max_pixels)"
        )
    if working_px > config.max_pixels:
        raise SizeLimitError(
            f"{path}: --gsd {config.gsd} makes a working grid of {working_px:.3g} pixels, above "
            f"max_pixels={config.max_pixels:.3g}; choose a coarser --gsd (the file's pixel is {_pixel_m(info)}) "
            "or raise --max-pixels"
        )
    if config.gsd is not None:
        _check_not_tiny(info, config.gsd, rows, cols)
    grid = make_grid(info, config)
    if len(grid) > config.max_tiles:
        raise SizeLimitError(
            f"{path}: {len(grid)} tiles ({grid.rows} x {grid.cols}) exceed max_tiles={config.max_tiles}; "
            "use a larger --tile-size or a coarser --gsd, or raise --max-tiles (YAML max_tiles)"
        )
    return grid


def _pixel_m(info: RasterInfo) -> str:
    """A source pixel's size for messages: ``30 m`` (``90.1 x 88.9 m`` when the sides differ)."""
    height, width = pixel_size_m(info)
    unit = " m" if info.georeferenced else " pixel"
    return f"{height:.3g}{unit}" if f"{height:.3g}" == f"{width:.3g}" else f"{height:.3g} x {width:.3g}{unit}"


def _check_not_tiny(info: RasterInfo, gsd: float, rows: float, cols: float) -> None:
    """Refuse a ``--gsd`` that leaves fewer than :data:`MIN_WORKING_SIDE` working pixels on a side
    (or fewer than the raster's own pixels, for a raster narrower than that).

    Raises:
        SizeLimitError: the message gives the grid, the file's pixel size and the coarsest --gsd that works.
    """
    need_rows, need_cols = min(MIN_WORKING_SIDE, info.height), min(MIN_WORKING_SIDE, info.width)
    if round(rows) >= need_rows and round(cols) >= need_cols:
        return
    coarsest = gsd * min(rows / need_rows, cols / need_cols)
    raise SizeLimitError(
        f"{info.path}: --gsd {gsd:g} makes a working grid of {round(rows)} x {round(cols)} pixels (the file's pixel "
        f"is {_pixel_m(info)}), too coarse to find water in; choose a --gsd of at most {coarsest:.3g}"
    )


def check_free_disk(info: RasterInfo, config: WorkFileOptions, out_dir: Path) -> None:
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


__all__ = ["LimitOptions", "WorkFileOptions", "check_size", "check_free_disk", "work_file_bytes", "free_bytes"]
