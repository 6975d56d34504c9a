"""Segment one raster end to end: stats, tiles (coarse mask, prompts, SAM), mask COG, polygons,
quicklook and manifest.

Reader threads read and prepare tiles (read, normalise, coarse mask, prompts) ahead of the model,
in grid order and at most ``prefetch`` ahead; the main thread batches tiles that have prompts through SAM's encoder and
writes each tile's core. Tiles without coarse water or without valid data skip SAM.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning as RioNotGeoreferencedWarning
from rasterio.errors import RasterioError
from scipy import ndimage
from tqdm.auto import tqdm

from samgeo_pipeline.coarse import apply_rule, rule_warnings
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import CoarseMaskWarning, NotGeoreferencedWarning, RasterReadError, SamgeoPipelineError
from samgeo_pipeline.limits import check_free_disk, check_size
from samgeo_pipeline.manifest import build_manifest, check_folder_owner, file_sha256, find_reusable, write_manifest
from samgeo_pipeline.prompts import ComponentPrompt, prompts_for
from samgeo_pipeline.quicklook import preview_rgb, write_quicklook
from samgeo_pipeline.radiometry import ImageStats, source_dtype, stats_from_array, to_rgb8
from samgeo_pipeline.raster import (
    RasterInfo,
    as_float32,
    decimated_shape,
    gdal_env,
    inspect_raster,
    read_decimated,
    read_native,
)
from samgeo_pipeline.sam import ModelSource, SamPredictor
from samgeo_pipeline.tiling import Tile, TileGrid, core_of, inside_part
from samgeo_pipeline.vectorize import write_polygons
from samgeo_pipeline.writers import MASK_NODATA, WindowedRasterWriter

Status = Literal["done", "skipped", "partial", "failed"]


@dataclass
class TileCounts:
    """How many tiles went which way."""

    total: int = 0
    sam: int = 0
    coarse_only: int = 0
    skipped: int = 0
    failed: int = 0
    failed_tiles: list[str] = field(default_factory=list)


@dataclass
class SegmentResult:
    """Outcome of one input; ``error`` is a one-line reason when ``status`` is failed/partial."""

    input: Path
    out_dir: Path
    status: Status
    error: str | None = None
    tiles: TileCounts = field(default_factory=TileCounts)
    water_fraction: float | None = None
    water_area_m2: float | None = None
    polygons: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    manifest: dict | None = None


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


def prepare_tile(
    ds: rasterio.DatasetReader, info: RasterInfo, stats: ImageStats, tile: Tile, config: SegmentConfig
) -> PreparedTile:
    """Read one tile and derive its composite, coarse mask and prompts (deterministic per seed)."""
    native, valid = read_tile_native(ds, info, tile)
    data = as_float32(native)
    rgb = to_rgb8(data, valid, stats, native) if config.uses_sam else None  # SAM's input
    del native
    coarse = apply_rule(data, valid, stats.coarse, config.min_area, pools=config.uses_sam)
    prompts: list[ComponentPrompt] = []
    if config.uses_sam and coarse.water.any():
        rng = np.random.default_rng([config.seed, tile.row, tile.col])
        prompts = prompts_for(coarse.water, valid, config, rng, coarse.sure_water, coarse.sure_land)
    return PreparedTile(tile, rgb, valid, coarse.water, prompts)


def read_tile_native(ds: rasterio.DatasetReader, info: RasterInfo, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~samgeo_pipeline.tiling.read_tile` in the file's dtype (``as_float32`` of it is ``read_tile``'s data).

    Returns:
        ``(native, valid)``: ``(bands, tile_size, tile_size)`` in the file's dtype (zeros outside
        the raster) and ``bool (tile_size, tile_size)``.
    """
    size = tile.grid.tile_size
    inside = inside_part(tile, info.height, info.width)
    if inside is None:
        return np.zeros((len(info.band_indexes), size, size), info.dtype), np.zeros((size, size), bool)
    window, (rows, cols) = inside
    part, part_valid = read_native(ds, info, window, (rows.stop - rows.start, cols.stop - cols.start))
    if part.shape[1:] == (size, size):  # the whole tile lies inside the raster: no padding to add
        return part, part_valid
    native = np.zeros((len(part), size, size), part.dtype)
    valid = np.zeros((size, size), bool)
    native[:, rows, cols] = part
    valid[rows, cols] = part_valid
    return native, valid


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


def read_workers(config: SegmentConfig) -> int:
    """Reader threads: ``config.read_workers``, or (0) one per CPU this process may use, at most 32."""
    if config.read_workers:
        return config.read_workers
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(32, cpus))


def _prepared_tiles(info: RasterInfo, stats: ImageStats, grid: TileGrid, config: SegmentConfig) -> Iterator[PreparedTile]:
    """Prepare tiles on :func:`read_workers` threads, up to ``config.prefetch`` ahead (at least one
    per thread), in grid order.

    GDAL decoding and most NumPy/OpenCV work release the GIL, so tiles are prepared in parallel
    while the consumer runs SAM or writes. Reads go through one dataset handle per vertical strip
    of the grid (as many strips as threads, at most one per column), one read at a time per handle:
    neighbouring tiles share blocks, which a handle then finds in GDAL's block cache (a handle per
    thread decoded most blocks 2-3 times over).
    """
    workers = read_workers(config)
    strips = max(1, min(workers, grid.cols))
    handles: list[_SharedDataset | None] = [None] * strips
    opening = threading.Lock()

    def prepare(tile: Tile) -> PreparedTile:
        strip = tile.col * strips // grid.cols
        with opening:
            ds = handles[strip]
            if ds is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RioNotGeoreferencedWarning)
                    ds = handles[strip] = _SharedDataset(rasterio.open(info.path))
        return prepare_tile(ds, info, stats, tile, config)  # type: ignore[arg-type]

    workers = read_workers(config)
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


class _SharedDataset:
    """A dataset handle shared by reader threads: one ``read`` / ``read_masks`` at a time (a GDAL
    handle must not be used by two threads at once); other attributes are the dataset's."""

    def __init__(self, ds: rasterio.DatasetReader) -> None:
        self._ds = ds
        self._lock = threading.Lock()

    def read(self, *args: object, **kwargs: object) -> np.ndarray:
        with self._lock:
            return self._ds.read(*args, **kwargs)

    def read_masks(self, *args: object, **kwargs: object) -> np.ndarray:
        with self._lock:
            return self._ds.read_masks(*args, **kwargs)

    def close(self) -> None:
        self._ds.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._ds, name)


class _TileSink:
    """Writes each tile's core into the output rasters and keeps the counts."""

    def __init__(self, info: RasterInfo, config: SegmentConfig, out_dir: Path) -> None:
        self.info = info
        self.config = config
        self.mask = WindowedRasterWriter(info, out_dir / "mask.tif", "uint8", MASK_NODATA)
        try:
            self.prob = (
                WindowedRasterWriter(info, out_dir / "probability.tif", "float32", float("nan"))
                if config.probability
                else None
            )
        except BaseException:
            self.mask.abort()  # no work file is left behind
            raise
        self.counts = TileCounts()
        self.water_pixels = 0
        self.valid_pixels = 0

    def write(self, prepared: PreparedTile, sam: np.ndarray | None, failed: bool = False) -> None:
        """Write a tile's core.

        Args:
            prepared: the tile.
            sam: SAM's answer for the tile in working pixels: a ``bool`` water mask, or ``float32``
                logits (water where > 0; needed for ``probability.tif``); None: use the coarse mask.
            failed: SAM failed on this tile: its core is written as nodata.
        """
        tile, info, grid = prepared.tile, self.info, prepared.tile.grid
        if sam is None:
            water = prepared.coarse
        else:
            water = sam if sam.dtype == bool else sam > 0
            if self.config.restrict_dilation > 0:
                allowed = ndimage.binary_dilation(prepared.coarse, iterations=self.config.restrict_dilation)
                water = water & allowed
        valid = prepared.valid
        core = tile.core_window(info.height, info.width)
        if grid.read_size == grid.tile_size:  # working pixels are source pixels: cut the core first
            rows = slice(grid.halo, grid.halo + int(core.height))
            cols = slice(grid.halo, grid.halo + int(core.width))
            water, valid = water[rows, cols], valid[rows, cols]
        else:
            water = core_of(tile, water.view(np.uint8), info.height, info.width).view(bool)
            valid = core_of(tile, valid.view(np.uint8), info.height, info.width).view(bool)
        if failed:
            out_core = np.full(valid.shape, MASK_NODATA, np.uint8)
        else:
            out_core = np.where(valid, water.view(np.uint8), np.uint8(MASK_NODATA))
            n_valid = int(np.count_nonzero(valid))
            self.valid_pixels += n_valid
            self.water_pixels += int(np.count_nonzero(out_core == 1)) if n_valid else 0
        self.mask.write(out_core, core)
        if self.prob is not None:
            if sam is None or sam.dtype == bool:
                prob = (prepared.coarse if sam is None else sam).astype(np.float32)
            else:
                prob = (1.0 / (1.0 + np.exp(-np.clip(sam, -50, 50)))).astype(np.float32)
            prob[~prepared.valid | failed] = np.nan
            self.prob.write(core_of(tile, prob, info.height, info.width, nearest=False), core)

    def finish(self) -> list[Path]:
        paths = [self.mask.finish("nearest")]
        if self.prob is not None:
            paths.append(self.prob.finish("average"))
        return paths

    def abort(self) -> None:
        self.mask.abort()
        if self.prob is not None:
            self.prob.abort()


def _run_sam_batch(
    predictor: SamPredictor, batch: list[PreparedTile], sink: _TileSink, config: SegmentConfig
) -> None:
    """Encode a batch of tiles, decode all their prompts at once, write; retry tile by tile on failure.

    The predictor returns water masks (``bool``), or logits when ``probability.tif`` is written.
    """
    try:
        embeddings, resized = predictor.embed([p.rgb for p in batch])
        results = predictor.predict_masks(
            embeddings, [p.prompts for p in batch], batch[0].rgb.shape[:2], resized, config.point_merge,
            logits=config.probability,
        )
    except (RuntimeError, torch.cuda.OutOfMemoryError):
        if len(batch) > 1:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            for p in batch:
                _run_sam_batch(predictor, [p], sink, config)
            return
        sink.counts.failed += 1
        sink.counts.failed_tiles.append(f"{batch[0].tile.row},{batch[0].tile.col}")
        sink.write(batch[0], None, failed=True)
        return
    for p, result in zip(batch, results):
        sink.write(p, result)
        sink.counts.sam += 1


def segment_raster(
    path: Path,
    out_dir: Path,
    config: SegmentConfig,
    predictor: SamPredictor | None = None,
    model_source: ModelSource | None = None,
    source: str | None = None,
) -> SegmentResult:
    """Segment one raster into ``out_dir`` (mask.tif, water.gpkg, quicklook.png, manifest.json).

    Args:
        path: input GeoTIFF / COG / VRT.
        out_dir: this input's output folder (created).
        config: options. With a fine-tuned predictor (``predictor.preprocessing`` set), its composite,
            percentiles and band mapping apply (:meth:`SegmentConfig.with_checkpoint`).
        predictor: loaded SAM, or None when ``config.model`` is ``none``.
        model_source: where the weights came from (manifest).
        source: the input as the user named it (a URL for a staged remote copy); default: ``path``
            resolved. The manifest records it; outputs of another source with other bytes are not
            replaced without ``overwrite`` (:func:`~samgeo_pipeline.manifest.check_folder_owner`).

    Returns:
        The result. Errors a user can cause raise :class:`SamgeoPipelineError` (one-line message);
        no partial output is left under a final name. Inputs over the size limits are refused
        before any read (:mod:`samgeo_pipeline.limits`).
    """
    with gdal_env():
        return _segment_raster(path, out_dir, config, predictor, model_source, source)


def _segment_raster(
    path: Path,
    out_dir: Path,
    config: SegmentConfig,
    predictor: SamPredictor | None,
    model_source: ModelSource | None,
    source: str | None = None,
) -> SegmentResult:
    """:func:`segment_raster` inside its GDAL environment."""
    if config.uses_sam and predictor is None:
        raise SamgeoPipelineError(f"model {config.model!r} requested but no predictor was loaded")
    if predictor is not None and predictor.preprocessing:
        config = config.with_checkpoint(predictor.preprocessing)  # what the fine-tuned model saw
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NotGeoreferencedWarning)
        info = inspect_raster(path, config.bands, config.nodata)
    run_warnings = [str(w.message) for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
    for message in run_warnings:
        warnings.warn(message, NotGeoreferencedWarning, stacklevel=2)
    grid = check_size(info, config)  # before any read: a header can claim any size
    source = source if source is not None else str(Path(path).resolve())
    checksum = file_sha256(path)
    seconds["inspect"] = time.perf_counter() - t0
    if not config.overwrite:
        previous = find_reusable(out_dir, checksum, config)
        if previous is not None:
            return SegmentResult(path, out_dir, "skipped", manifest=previous)
        check_folder_owner(out_dir, source, checksum)
    check_free_disk(info, config, out_dir)

    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RioNotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                shape = decimated_shape(info.height, info.width, config.stats_size)
                data, valid = read_decimated(ds, info, shape, Resampling.nearest, workers=read_workers(config))
                dtype = source_dtype(ds, info)
        stats = stats_from_array(data, valid, tuple(info.band_names), config, str(path), dtype)
        preview = preview_rgb(data, valid, stats)  # the quicklook's image, from the same read
        del data, valid
    except RasterioError as exc:
        raise RasterReadError(f"{path}: read failed while computing statistics ({exc})") from None
    seconds["stats"] = time.perf_counter() - t
    release_free_memory()
    for message in rule_warnings(stats.coarse, str(path)):
        warnings.warn(message, CoarseMaskWarning, stacklevel=2)
        run_warnings.append(message)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # outputs below are about to change
    if not config.probability:  # a probability raster from an earlier run would no longer match
        (out_dir / "probability.tif").unlink(missing_ok=True)
    sink = _TileSink(info, config, out_dir)
    sink.counts.total = len(grid)
    t = time.perf_counter()
    try:
        pending: list[PreparedTile] = []
        bar = tqdm(total=len(grid), desc=path.name, unit="tile", disable=not config.progress, leave=False)
        with bar:
            for prepared in _prepared_tiles(info, stats, grid, config):
                if not prepared.valid.any():
                    sink.counts.skipped += 1
                    sink.write(prepared, None)
                elif predictor is None:
                    sink.counts.coarse_only += 1
                    sink.write(prepared, None)
                elif not prepared.prompts:
                    sink.counts.skipped += 1
                    sink.write(prepared, None)
                else:
                    pending.append(prepared)
                    if len(pending) == config.batch_size:
                        _run_sam_batch(predictor, pending, sink, config)
                        bar.update(len(pending))
                        pending = []
                    continue
                bar.update(1)
            if pending:
                _run_sam_batch(predictor, pending, sink, config)  # type: ignore[arg-type]
                bar.update(len(pending))
        seconds["tiles"] = time.perf_counter() - t
        release_free_memory()
        t = time.perf_counter()
        raster_outputs = sink.finish()
        seconds["cog"] = time.perf_counter() - t
        release_free_memory()
    except BaseException:
        sink.abort()
        raise

    t = time.perf_counter()
    n_polygons, area_m2 = write_polygons(out_dir / "mask.tif", out_dir / "water.gpkg", config.simplify)
    seconds["vectorize"] = time.perf_counter() - t
    release_free_memory()
    t = time.perf_counter()
    write_quicklook(preview, out_dir / "mask.tif", out_dir / "quicklook.png")
    seconds["quicklook"] = time.perf_counter() - t

    counts = sink.counts
    fraction = sink.water_pixels / sink.valid_pixels if sink.valid_pixels else 0.0
    outputs = [*raster_outputs, out_dir / "water.gpkg", out_dir / "quicklook.png"]
    status: Status = "partial" if counts.failed else "done"
    error = f"{path}: SAM failed on {counts.failed} tile(s) (written as nodata)" if counts.failed else None
    result = SegmentResult(
        path, out_dir, status, error, counts, fraction, area_m2, n_polygons, seconds
    )
    seconds["total"] = time.perf_counter() - t0
    result.manifest = build_manifest(
        info, checksum, config, model_source, predictor, stats, grid, result, outputs, run_warnings, source
    )
    write_manifest(out_dir / "manifest.json", result.manifest)
    return result
