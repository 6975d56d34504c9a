"""The tile grid: cores that cover the raster exactly once, each read with context around it.

Frames:

- *source pixels*: the input raster, ``height x width``. Every :class:`~rasterio.windows.Window`
  here is in source pixels; with ``gsd`` a read window's offsets and sizes may be fractional.
- *working pixels*: what the coarse mask and SAM see. Without ``gsd`` they are the source pixels.
  With ``gsd`` the raster is resampled to ``round(height / scale) x round(width / scale)`` working
  pixels that span it exactly (``scale`` = gsd / the source pixel's side in metres, per axis:
  :func:`working_size`), so per axis one working pixel is ``length / working`` source pixels and
  working pixel ``y`` covers source rows ``[y * length / working, (y + 1) * length / working)``. A
  read of the whole raster at that ``out_shape`` is the *full-grid read*; every tile read is a
  window of it, pixel for pixel.
- *tile pixels*: a tile is ``tile_size x tile_size`` working pixels whose top-left is working pixel
  :attr:`Tile.start`. Where the raster is shorter than a tile the tile starts at 0 and the rest of
  the array (bottom or right) is padding: invalid zeros.

Along each axis (:class:`Axis`) the grid takes the fewest tiles the halo rule allows, spreads them
evenly from the raster's start to its end (so edge tiles lie inside the raster whenever the raster
is at least a tile long) and cuts the cores in the middle of each overlap: every core keeps at least
``halo`` working pixels of context on each side where the raster goes on, and as much as the
spacing gives. A core in source pixels holds the source pixels whose centres lie in its working
pixels, so the cores cover the raster exactly once, with or without ``gsd`` (a core holds no source
pixel only where working pixels are finer than source pixels and the core narrower than one).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from samgeo_pipeline.io.ground import pixel_size_m
from samgeo_pipeline.io.raster import RasterInfo, as_float32, read_native

#: Side of SAM's encoder input in pixels: every tile is resized to it.
SAM_INPUT_SIDE = 1024


@dataclass(frozen=True)
class Axis:
    """The tiling of one axis (rows or columns).

    Attributes:
        length: raster length in source pixels.
        working: raster length in working pixels (``length`` without ``gsd``).
        starts: working pixel where each tile starts (0 first; ``working - tile_size`` last when
            the raster is at least a tile long).
        cuts: core boundaries in working pixels, ``len(starts) + 1`` values from 0 to ``working``:
            tile ``i``'s core is ``[cuts[i], cuts[i + 1])``.
    """

    length: int
    working: int
    starts: tuple[int, ...]
    cuts: tuple[int, ...]

    @property
    def scale(self) -> float:
        """Source pixels per working pixel along this axis."""
        return self.length / self.working

    @property
    def native(self) -> bool:
        """True when working pixels are source pixels along this axis."""
        return self.length == self.working

    def source_edge(self, w: int) -> float:
        """Working-pixel edge ``w`` in source pixels (an ``int`` whenever it falls on a source edge)."""
        whole, rest = divmod(w * self.length, self.working)
        return whole if rest == 0 else w * self.length / self.working

    def source_cut(self, w: int) -> int:
        """First source pixel whose centre lies at or past working-pixel edge ``w``."""
        return -((self.working - 2 * w * self.length) // (2 * self.working))

    def working_index(self, first: int, stop: int) -> np.ndarray:
        """``intp``: the working pixel holding the centre of each source pixel ``first..stop-1``."""
        return (2 * np.arange(first, stop, dtype=np.intp) + 1) * self.working // (2 * self.length)

    def samples(self, first: int, stop: int) -> np.ndarray:
        """``float64``: where the centres of source pixels ``first..stop-1`` lie in working-pixel
        sample coordinates (working pixel ``y``'s value sits at ``y``), clamped to the raster's
        first and last working pixel: the positions to interpolate at."""
        centres = (2 * np.arange(first, stop) + 1) * (self.working / (2 * self.length))
        samples: np.ndarray = np.clip(centres - 0.5, 0, self.working - 1)
        return samples


def _axis(length: int, working: int, tile_size: int, halo: int) -> Axis:
    """Fewest tiles of ``tile_size`` whose cores keep ``halo`` of context, spread evenly."""
    if working <= tile_size:
        return Axis(length, working, (0,), (0, working))
    core = tile_size - 2 * halo
    # n tiles carry two edge cores of up to tile_size - halo and n - 2 cores of up to `core`
    n = -(-(working - 2 * halo) // core)
    span = working - tile_size
    starts = tuple((i * span + (n - 1) // 2) // (n - 1) for i in range(n))
    middles = tuple(b + (a + tile_size - b) // 2 for a, b in zip(starts, starts[1:], strict=False))
    return Axis(length, working, starts, (0, *middles, working))


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one raster.

    Attributes:
        tile_size: side of a tile in working pixels (what the coarse mask and SAM see).
        context: the halo in working pixels: the least context a core has on a side where the
            raster goes on.
        y, x: the tiling of the rows and of the columns.
    """

    tile_size: int
    context: int
    y: Axis
    x: Axis

    @property
    def rows(self) -> int:
        """Tiles down."""
        return len(self.y.starts)

    @property
    def cols(self) -> int:
        """Tiles across."""
        return len(self.x.starts)

    @property
    def scale(self) -> float:
        """Source pixels per working pixel, mean of the two axes (exactly 1.0 without ``gsd``)."""
        return (self.y.scale + self.x.scale) / 2

    @property
    def read_size(self) -> float:
        """Side of a tile's read window in source pixels (``tile_size * scale``)."""
        return self.tile_size * self.scale

    @property
    def halo(self) -> int:
        """The halo in source pixels (rounded; for the manifest)."""
        return round(self.context * self.scale)

    @property
    def core(self) -> int:
        """Side of a core at the halo rule's limit in source pixels (rounded; for the manifest): cores
        vary per tile, see :meth:`Tile.core_window`."""
        return round((self.tile_size - 2 * self.context) * self.scale)

    def model_pixels_per_image_pixel(self, input_side: int = SAM_INPUT_SIDE) -> float:
        """SAM input pixels per source pixel when every tile goes to SAM (each as ``input_side``²)."""
        return len(self) * input_side**2 / (self.y.length * self.x.length)

    def check_raster(self, height: int, width: int) -> None:
        """Raise ``ValueError`` (a caller's bug) unless ``height`` x ``width`` is the grid's raster."""
        if (height, width) != (self.y.length, self.x.length):
            raise ValueError(f"raster {height}x{width} is not the grid's {self.y.length}x{self.x.length}")

    def __len__(self) -> int:
        return self.rows * self.cols

    def __iter__(self) -> Iterator[Tile]:
        for row in range(self.rows):
            for col in range(self.cols):
                yield Tile(row, col, self)


def working_size(info: RasterInfo, gsd: float | None) -> tuple[float, float]:
    """``(rows, cols)``: the raster's extent in working pixels of ``gsd`` metres (not yet rounded,
    so a limit can be checked before a grid is made; may be huge or below 1), or its size without ``gsd``.

    The one place ``--gsd`` meets the raster's pixel size (:func:`~samgeo_pipeline.io.ground.pixel_size_m`:
    metres on any CRS, degrees converted at the centre latitude on a geographic one).
    """
    if gsd is None:
        return float(info.height), float(info.width)
    height_m, width_m = pixel_size_m(info)
    return info.height * height_m / gsd, info.width * width_m / gsd


class GridOptions(Protocol):
    """The options :func:`make_grid` reads; :class:`~samgeo_pipeline.config.ImageOptions` (both configs) satisfies it."""

    # Read-only properties: the configs are frozen dataclasses.
    @property
    def tile_size(self) -> int: ...
    @property
    def halo(self) -> int: ...
    @property
    def gsd(self) -> float | None: ...


def make_grid(info: RasterInfo, config: GridOptions) -> TileGrid:
    """The grid for ``info`` under ``config`` (``gsd`` sets the working pixels, see the module doc)."""
    rows, cols = working_size(info, config.gsd)

    def axis(length: int, working: float) -> Axis:
        return _axis(length, length if config.gsd is None else max(1, round(working)), config.tile_size, config.halo)

    return TileGrid(config.tile_size, config.halo, axis(info.height, rows), axis(info.width, cols))


@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`TileGrid`: its grid position and windows."""

    row: int
    col: int
    grid: TileGrid

    @property
    def start(self) -> tuple[int, int]:
        """``(y, x)``: the working pixel at the tile's top-left."""
        return self.grid.y.starts[self.row], self.grid.x.starts[self.col]

    @property
    def read_window(self) -> Window:
        """The whole tile in source pixels; reaches past the raster only where the raster is
        shorter than a tile."""
        (y, x), g = self.start, self.grid
        row_off, col_off = g.y.source_edge(y), g.x.source_edge(x)
        return Window(
            col_off, row_off, g.x.source_edge(x + g.tile_size) - col_off, g.y.source_edge(y + g.tile_size) - row_off
        )

    @property
    def core_slices(self) -> tuple[slice, slice]:
        """``(rows, cols)``: the core in tile pixels (working pixels from the tile's top-left)."""
        (y, x), g = self.start, self.grid
        return (
            slice(g.y.cuts[self.row] - y, g.y.cuts[self.row + 1] - y),
            slice(g.x.cuts[self.col] - x, g.x.cuts[self.col + 1] - x),
        )

    def core_window(self, height: int, width: int) -> Window:
        """The core in source pixels (integers; ``height`` x ``width`` must be the grid's raster)."""
        g = self.grid
        g.check_raster(height, width)
        r0, r1 = g.y.source_cut(g.y.cuts[self.row]), g.y.source_cut(g.y.cuts[self.row + 1])
        c0, c1 = g.x.source_cut(g.x.cuts[self.col]), g.x.source_cut(g.x.cuts[self.col + 1])
        return Window(c0, r0, c1 - c0, r1 - r0)

    def working_transform(self, transform: Affine) -> Affine:
        """The affine of the tile's pixels, given the raster's ``transform`` (of source pixels)."""
        g, win = self.grid, self.read_window
        return transform @ Affine.translation(win.col_off, win.row_off) @ Affine.scale(g.x.scale, g.y.scale)


def inside_part(tile: Tile, height: int, width: int) -> tuple[Window, tuple[slice, slice]]:
    """The part of a tile inside a raster of ``height`` x ``width`` (the grid's raster).

    Returns:
        ``(window, (rows, cols))``: the window in source pixels (fractional with ``gsd``; read it
        with ``out_shape`` of the slices' lengths) and where its read lands in the tile's array.
    """
    g, (y, x) = tile.grid, tile.start
    g.check_raster(height, width)
    y1, x1 = min(y + g.tile_size, g.y.working), min(x + g.tile_size, g.x.working)
    row_off, col_off = g.y.source_edge(y), g.x.source_edge(x)
    window = Window(col_off, row_off, g.x.source_edge(x1) - col_off, g.y.source_edge(y1) - row_off)
    return window, (slice(0, y1 - y), slice(0, x1 - x))


def read_tile_native(ds: rasterio.DatasetReader, info: RasterInfo, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Read a tile in working pixels, in the file's dtype; padding past the raster is invalid zeros.

    The one tile reader: the part of the tile inside the raster (:func:`inside_part`) read at the
    working pixels' ``out_shape`` (``--gsd``) with its validity, padded to the tile's side. Segmenting
    (``run/prepare.py``) keeps the native dtype; fine-tuning takes :func:`read_tile`.

    Returns:
        ``(native, valid)``: ``(bands, tile_size, tile_size)`` in the file's dtype and
        ``bool (tile_size, tile_size)``.
    """
    size = tile.grid.tile_size
    window, (rows, cols) = inside_part(tile, info.height, info.width)
    part, part_valid = read_native(ds, info, window, (rows.stop - rows.start, cols.stop - cols.start))
    if part.shape[1:] == (size, size):  # the whole tile lies inside the raster: no padding to add
        return part, part_valid
    native = np.zeros((len(part), size, size), part.dtype)
    valid = np.zeros((size, size), bool)
    native[:, rows, cols] = part
    valid[rows, cols] = part_valid
    return native, valid


def read_tile(ds: rasterio.DatasetReader, info: RasterInfo, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_tile_native` as ``float32`` (:func:`~samgeo_pipeline.io.raster.as_float32`).

    Returns:
        ``(data, valid)``: ``float32 (bands, tile_size, tile_size)`` and ``bool (tile_size, tile_size)``.
    """
    native, valid = read_tile_native(ds, info, tile)
    return as_float32(native), valid


def core_of(tile: Tile, array: np.ndarray, height: int, width: int, nearest: bool = True) -> np.ndarray:
    """Cut the core out of a tile's array, on the source grid.

    Each source pixel of the core takes the working pixel its centre lies in (``nearest``, for
    masks) or the linear interpolation at its centre (probabilities), so the result does not
    depend on which tile a pixel came from.

    Args:
        tile: the tile.
        array: ``(tile_size, tile_size)`` array in tile pixels.
        height, width: the raster's size in source pixels.
        nearest: nearest working pixel, else linear interpolation (``float`` arrays).

    Returns:
        ``(core rows, core cols)`` array of ``tile.core_window``'s shape, same dtype; a view of
        ``array`` when working pixels are source pixels.
    """
    g, (y, x) = tile.grid, tile.start
    core = tile.core_window(height, width)
    if g.y.native and g.x.native:
        return array[tile.core_slices]
    rows = int(core.row_off), int(core.row_off + core.height)
    cols = int(core.col_off), int(core.col_off + core.width)
    if nearest:
        picked: np.ndarray = array[g.y.working_index(*rows) - y][:, g.x.working_index(*cols) - x]
        return picked
    return _linear(_linear(array, g.y.samples(*rows) - y, 0), g.x.samples(*cols) - x, 1)


def _linear(array: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``array`` along ``axis`` at positions ``pos`` (sample ``i`` at ``i``,
    ``0 <= pos <= shape - 1``), in ``array``'s float dtype."""
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, array.shape[axis] - 1)
    shape = [1, 1]
    shape[axis] = -1
    frac = (pos - lo).astype(array.dtype).reshape(shape)
    a, b = np.take(array, lo, axis=axis), np.take(array, hi, axis=axis)
    interpolated: np.ndarray = a + (b - a) * frac
    return interpolated


__all__ = [
    "SAM_INPUT_SIDE", "Axis", "TileGrid", "Tile", "working_size", "make_grid", "inside_part", "read_tile_native", "read_tile",
    "core_of", "GridOptions",
]  # fmt: skip
