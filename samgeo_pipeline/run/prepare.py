"""The tile reader: reader threads read and prepare tiles (read, normalise, coarse mask, prompts)
ahead of the model, in grid order and at most ``prefetch`` ahead.

GDAL decoding and most NumPy/OpenCV work release the GIL, so tiles are prepared in parallel while
the consumer runs SAM or writes.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import rasterio

from samgeo_pipeline.errors import ignore_rasterio_georeference_warnings
from samgeo_pipeline.io.raster import RasterInfo, as_float32, open_for_tiles
from samgeo_pipeline.io.tiling import Tile, TileGrid, read_tile_native
from samgeo_pipeline.water.coarse import apply_rule
from samgeo_pipeline.water.prompts import ComponentPrompt, PromptOptions, prompts_for
from samgeo_pipeline.water.radiometry import ImageStats, to_rgb8

ignore_rasterio_georeference_warnings()


@dataclass
class PreparedTile:
    """A tile ready for the model: arrays in working pixels (``tile_size``²)."""

    tile: Tile
    rgb: np.ndarray | None
    """``uint8 (rows, cols, 3)`` normalised composite; None with ``--model none``."""
    valid: np.ndarray
    """``bool (rows, cols)``."""
    coarse: np.ndarray
    """``bool (rows, cols)`` coarse water mask."""
    prompts: list[ComponentPrompt]


class PrepareOptions(PromptOptions, Protocol):
    """The options :func:`prepare_tile` reads (and its prompts); :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    # Read-only properties: the configs are frozen dataclasses (``uses_sam`` is a property there).
    @property
    def uses_sam(self) -> bool: ...
    @property
    def min_area(self) -> int: ...
    @property
    def seed(self) -> int: ...


class ReaderOptions(Protocol):
    """The option :func:`read_workers` reads; :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    @property
    def read_workers(self) -> int: ...


class PrefetchOptions(PrepareOptions, ReaderOptions, Protocol):
    """The options :func:`prepared_tiles` reads; :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    @property
    def prefetch(self) -> int: ...


def prepare_tile(
    ds: rasterio.DatasetReader, info: RasterInfo, stats: ImageStats, tile: Tile, config: PrepareOptions
) -> PreparedTile:
    """Read one tile and derive its composite, coarse mask and prompts (deterministic per seed)."""
    data, valid = read_tile_native(ds, info, tile)  # integers stay integers: both stages take them
    if data.dtype.kind == "f":
        data = as_float32(data)
    rgb = to_rgb8(data, valid, stats) if config.uses_sam else None  # SAM's input
    coarse = apply_rule(data, valid, stats.coarse, config.min_area, pools=config.uses_sam)
    prompts: list[ComponentPrompt] = []
    if config.uses_sam and config.prompt != "text" and coarse.water.any():  # text prompts need no components
        rng = np.random.default_rng([config.seed, tile.row, tile.col])
        prompts = prompts_for(coarse.water, valid, config, rng, coarse.sure_water, coarse.sure_land, coarse.components)
    return PreparedTile(tile, rgb, valid, coarse.water, prompts)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, TypeError, AttributeError):
        return None


def release_free_memory() -> None:
    """Give memory freed by the last stage back to the OS (glibc ``malloc_trim``; elsewhere a no-op).

    Called between stages: glibc keeps freed buffers (tile arrays, GDAL blocks, much of it in the
    reader thread's arena) resident, so without it each stage's peak stacked on the previous
    stage's leftovers and the peak RSS grew with the raster (benchmarks/bench_memory.py).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def read_workers(config: ReaderOptions) -> int:
    """Reader threads: ``config.read_workers``, or (0) one per CPU this process may use, at most 32."""
    if config.read_workers:
        return config.read_workers
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(32, cpus))


def prepared_tiles(info: RasterInfo, stats: ImageStats, grid: TileGrid, config: PrefetchOptions) -> Iterator[PreparedTile]:
    """Prepare tiles on :func:`read_workers` threads, up to ``config.prefetch`` ahead (at least one
    per thread), in grid order.

    Reads go through one dataset handle per vertical strip of the grid (as many strips as threads,
    at most one per column), one read at a time per handle: neighbouring tiles share blocks, which
    a handle then finds in GDAL's block cache (a handle per thread decoded most blocks 2-3 times over).
    """
    workers = read_workers(config)
    strips = max(1, min(workers, grid.cols))
    handles: list[SharedDataset | None] = [None] * strips
    opening = threading.Lock()

    def prepare(tile: Tile) -> PreparedTile:
        strip = tile.col * strips // grid.cols
        with opening:
            ds = handles[strip]
            if ds is None:
                ds = handles[strip] = SharedDataset(open_for_tiles(info, not (grid.x.native and grid.y.native)))
        return prepare_tile(ds, info, stats, tile, config)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="samgeo-reader")
    pending: deque[Future[PreparedTile]] = deque()
    tiles = iter(grid)
    try:
        for tile in itertools.islice(tiles, max(config.prefetch, workers)):
            pending.append(pool.submit(prepare, tile))
        while pending:
            prepared = pending.popleft().result()
            for tile in itertools.islice(tiles, 1):
                pending.append(pool.submit(prepare, tile))
            yield prepared
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        for ds in handles:
            if ds is not None:
                ds.close()


class SharedDataset:
    """A dataset handle shared by reader threads: one ``read`` / ``read_masks`` at a time (a GDAL
    handle must not be used by two threads at once); other attributes are the dataset's."""

    def __init__(self, ds: rasterio.DatasetReader) -> None:
        self._ds = ds
        self._lock = threading.Lock()

    def read(self, *args: object, **kwargs: object) -> np.ndarray:
        with self._lock:
            data: np.ndarray = self._ds.read(*args, **kwargs)
            return data

    def read_masks(self, *args: object, **kwargs: object) -> np.ndarray:
        with self._lock:
            masks: np.ndarray = self._ds.read_masks(*args, **kwargs)
            return masks

    def close(self) -> None:
        self._ds.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._ds, name)


__all__ = [
    "PreparedTile", "PrepareOptions", "ReaderOptions", "PrefetchOptions", "prepare_tile", "release_free_memory",
    "read_workers", "prepared_tiles",
]  # fmt: skip
