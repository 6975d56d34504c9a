"""The tile grid: cores that cover the raster exactly once, each read with a halo of context.

Frames: every window here is in *source pixels* of the input. A tile is read as a square of
``read_size`` source pixels (core plus halo on each side) and resampled to ``tile_size`` working
pixels (the same when no ``gsd`` is set). Only the core is written back, so there are no seams.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import rasterio
from rasterio.windows import Window

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.raster import RasterInfo, read_bands, source_resolution


@dataclass(frozen=True)
class TileGrid:
    """Tile geometry in source pixels.

    Attributes:
        core: side of a core in source pixels.
        halo: halo in source pixels.
        tile_size: side of a tile in working pixels (what the coarse mask and SAM see).
        rows, cols: number of tiles down and across.
    """

    core: int
    halo: int
    tile_size: int
    rows: int
    cols: int

    @property
    def read_size(self) -> int:
        """Side of a tile's read window in source pixels."""
        return self.core + 2 * self.halo

    @property
    def scale(self) -> float:
        """Source pixels per working pixel (1.0 without ``gsd``)."""
        return self.read_size / self.tile_size

    def __len__(self) -> int:
        return self.rows * self.cols

    def __iter__(self) -> Iterator[Tile]:
        for row in range(self.rows):
            for col in range(self.cols):
                yield Tile(row, col, self)


def make_grid(info: RasterInfo, config: SegmentConfig) -> TileGrid:
    """The grid for ``info`` under ``config`` (``gsd`` turns working pixels into source pixels)."""
    scale = 1.0 if config.gsd is None else config.gsd / source_resolution(info)
    core = max(1, round(config.core_size * scale))
    halo = round(config.halo * scale)
    return TileGrid(core, halo, config.tile_size, math.ceil(info.height / core), math.ceil(info.width / core))


@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`TileGrid`: grid position and its windows in source pixels."""

    row: int
    col: int
    grid: TileGrid

    @property
    def read_window(self) -> Window:
        """Core plus halo; may extend past the raster (filled with nodata when read)."""
        g = self.grid
        return Window(self.col * g.core - g.halo, self.row * g.core - g.halo, g.read_size, g.read_size)

    def core_window(self, height: int, width: int) -> Window:
        """The core, clipped to a raster of ``height`` x ``width``."""
        g = self.grid
        r0, c0 = self.row * g.core, self.col * g.core
        return Window(c0, r0, min(g.core, width - c0), min(g.core, height - r0))


def inside_part(tile: Tile, height: int, width: int) -> tuple[Window, tuple[slice, slice]] | None:
    """The part of a tile's read window inside a raster of ``height`` x ``width``.

    Returns:
        ``(window, (rows, cols))``: the window in source pixels and where its read lands in the
        tile's working-pixel array; None when the tile lies wholly outside the raster.
    """
    g = tile.grid
    win = tile.read_window
    r0, c0 = max(0, int(win.row_off)), max(0, int(win.col_off))
    r1 = min(height, int(win.row_off + win.height))
    c1 = min(width, int(win.col_off + win.width))
    if r1 <= r0 or c1 <= c0:
        return None
    y0 = round((r0 - win.row_off) / g.scale)
    x0 = round((c0 - win.col_off) / g.scale)
    y1 = min(g.tile_size, max(y0 + 1, round((r1 - win.row_off) / g.scale)))
    x1 = min(g.tile_size, max(x0 + 1, round((c1 - win.col_off) / g.scale)))
    return Window(c0, r0, c1 - c0, r1 - r0), (slice(y0, y1), slice(x0, x1))


def read_tile(ds: rasterio.DatasetReader, info: RasterInfo, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Read a tile in working pixels; parts outside the raster are invalid zeros.

    Returns:
        ``(data, valid)``: ``float32 (bands, tile_size, tile_size)`` and ``bool (tile_size, tile_size)``.
    """
    size = tile.grid.tile_size
    data = np.zeros((len(info.band_indexes), size, size), np.float32)
    valid = np.zeros((size, size), bool)
    inside = inside_part(tile, info.height, info.width)
    if inside is None:
        return data, valid
    window, (rows, cols) = inside
    part, part_valid = read_bands(ds, info, window, (rows.stop - rows.start, cols.stop - cols.start))
    if part.shape == data.shape:  # the whole tile lies inside the raster: no padding to add
        return part, part_valid
    data[:, rows, cols] = part
    valid[rows, cols] = part_valid
    return data, valid


def core_of(tile: Tile, array: np.ndarray, height: int, width: int, nearest: bool = True) -> np.ndarray:
    """Cut the core out of a working-pixel array, back on the source grid.

    Args:
        tile: the tile.
        array: ``(tile_size, tile_size)`` array in working pixels.
        height, width: raster size in source pixels.
        nearest: nearest-neighbour (masks) or bilinear (probabilities) when resampling.

    Returns:
        Array of the clipped core window's shape, same dtype.
    """
    g = tile.grid
    if g.read_size != g.tile_size:
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        array = cv2.resize(array, (g.read_size, g.read_size), interpolation=interp)
    core = tile.core_window(height, width)
    return array[g.halo : g.halo + int(core.height), g.halo : g.halo + int(core.width)]


__all__ = ["TileGrid", "Tile", "make_grid", "read_tile", "core_of"]
