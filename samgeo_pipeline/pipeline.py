"""Segment one raster end to end: stats, tiles (coarse mask, prompts, SAM), mask COG, polygons,
quicklook and manifest.

This module only orchestrates the stages: :mod:`~samgeo_pipeline.reader` prepares tiles on reader
threads, :mod:`~samgeo_pipeline.inference` batches tiles that have prompts through SAM, and
:mod:`~samgeo_pipeline.sink` writes each tile's core. Tiles without coarse water or without valid
data skip SAM. Each image's warnings are collected in its own list (recorded in its manifest), so
images run concurrently never see each other's.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from tqdm.auto import tqdm

from samgeo_pipeline.coarse import rule_warnings
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import CoarseMaskWarning, RasterReadError, SamgeoPipelineError
from samgeo_pipeline.inference import run_sam_batch
from samgeo_pipeline.limits import check_free_disk, check_size
from samgeo_pipeline.manifest import build_manifest, check_folder_owner, file_sha256, find_reusable, write_manifest
from samgeo_pipeline.quicklook import preview_rgb, write_quicklook
from samgeo_pipeline.radiometry import ImageStats, source_dtype, stats_from_array
from samgeo_pipeline.raster import RasterInfo, decimated_shape, gdal_env, inspect_raster, read_decimated
from samgeo_pipeline.reader import PreparedTile, prepared_tiles, read_workers, release_free_memory
from samgeo_pipeline.results import SegmentResult, Status, TileCounts
from samgeo_pipeline.sam import ModelSource, SamPredictor
from samgeo_pipeline.sink import TileSink
from samgeo_pipeline.tiling import TileGrid
from samgeo_pipeline.vectorize import write_polygons

__all__ = ["segment_raster", "SegmentResult", "TileCounts", "Status"]


def segment_raster(
    path: Path,
    out_dir: Path,
    config: SegmentConfig,
    predictor: SamPredictor | None = None,
    model_source: ModelSource | None = None,
    source: str | None = None,
    bands_source: str | None = None,
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
            resolved. The manifest records it (and ``bands_source``: how a caller such as the watch
            flow chose ``config.bands``, beside the mapping); outputs of another source with other bytes are not
            replaced without ``overwrite`` (:func:`~samgeo_pipeline.manifest.check_folder_owner`).

    Returns:
        The result: ``done``, ``skipped`` (reused), or ``partial`` when SAM ran out of memory on
        some tiles even one at a time (written as nodata, listed in the manifest). Errors a user can
        cause raise :class:`SamgeoPipelineError` (one-line message; SAM failing for another reason
        raises :class:`~samgeo_pipeline.errors.SamInferenceError`); no partial output is left under
        a final name. Inputs over the size limits are refused before any read
        (:mod:`samgeo_pipeline.limits`).
    """
    with gdal_env():
        return _segment_raster(path, out_dir, config, predictor, model_source, source, bands_source)


def _segment_raster(
    path: Path,
    out_dir: Path,
    config: SegmentConfig,
    predictor: SamPredictor | None,
    model_source: ModelSource | None,
    source: str | None = None,
    bands_source: str | None = None,
) -> SegmentResult:
    """:func:`segment_raster` inside its GDAL environment: the stages in order."""
    if config.uses_sam and predictor is None:
        raise SamgeoPipelineError(f"model {config.model!r} requested but no predictor was loaded")
    if predictor is not None and predictor.preprocessing:
        config = config.with_checkpoint(predictor.preprocessing)  # what the fine-tuned model saw
    seconds: dict[str, float] = {}
    image_warnings: list[str] = []  # this image's own: never a process-wide capture
    t0 = time.perf_counter()
    info = inspect_raster(path, config.bands, config.nodata)  # warns itself when not georeferenced
    if not info.georeferenced:
        image_warnings.append(f"{path}: no CRS or geotransform; outputs are in pixel coordinates and areas are unknown")
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
    stats, preview = _image_stats(path, info, config)
    seconds["stats"] = time.perf_counter() - t
    release_free_memory()
    for message in rule_warnings(stats.coarse, str(path)):
        warnings.warn(message, CoarseMaskWarning, stacklevel=3)
        image_warnings.append(message)

    _clear_stale_outputs(out_dir, config)
    counts, fraction, raster_outputs = _segment_tiles(path, out_dir, info, stats, grid, config, predictor, seconds)

    t = time.perf_counter()
    n_polygons, area_m2 = write_polygons(out_dir / "mask.tif", out_dir / "water.gpkg", config.simplify)
    seconds["vectorize"] = time.perf_counter() - t
    release_free_memory()
    t = time.perf_counter()
    write_quicklook(preview, out_dir / "mask.tif", out_dir / "quicklook.png")
    seconds["quicklook"] = time.perf_counter() - t

    outputs = [*raster_outputs, out_dir / "water.gpkg", out_dir / "quicklook.png"]
    status: Status = "partial" if counts.failed else "done"
    reason = _partial_reason(path, counts)
    result = SegmentResult(path, out_dir, status, reason, counts, fraction, area_m2, n_polygons, seconds)
    seconds["total"] = time.perf_counter() - t0
    result.manifest = build_manifest(
        info, checksum, config, model_source, predictor, stats, grid, result, outputs, image_warnings, source,
        bands_source,
    )
    write_manifest(out_dir / "manifest.json", result.manifest)
    return result


def _image_stats(path: Path, info: RasterInfo, config: SegmentConfig) -> tuple[ImageStats, np.ndarray]:
    """Whole-image statistics and the quicklook's preview, from one decimated read.

    Raises:
        RasterReadError: the raster cannot be read.
    """
    try:
        with rasterio.open(path) as ds:
            shape = decimated_shape(info.height, info.width, config.stats_size)
            data, valid = read_decimated(ds, info, shape, Resampling.nearest, workers=read_workers(config))
            dtype = source_dtype(ds, info)
        stats = stats_from_array(data, valid, tuple(info.band_names), config, str(path), dtype)
        return stats, preview_rgb(data, valid, stats)
    except RasterioError as exc:
        raise RasterReadError(f"{path}: read failed while computing statistics ({exc})") from None


def _clear_stale_outputs(out_dir: Path, config: SegmentConfig) -> None:
    """Remove what the outputs about to be written make stale (the manifest first: the run is not finished)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    if not config.probability:  # a probability raster from an earlier run would no longer match
        (out_dir / "probability.tif").unlink(missing_ok=True)


def _segment_tiles(
    path: Path,
    out_dir: Path,
    info: RasterInfo,
    stats: ImageStats,
    grid: TileGrid,
    config: SegmentConfig,
    predictor: SamPredictor | None,
    seconds: dict[str, float],
) -> tuple[TileCounts, float, list[Path]]:
    """Every tile through the coarse mask and (with prompts) SAM into the output COGs.

    Returns:
        ``(tile counts, water fraction of valid pixels, raster outputs)``; no work file is left
        behind on error.
    """
    sink = TileSink(info, config, out_dir)
    sink.counts.total = len(grid)
    t = time.perf_counter()
    try:
        with tqdm(total=len(grid), desc=path.name, unit="tile", disable=not config.progress, leave=False) as bar:
            pending: list[PreparedTile] = []
            for prepared in prepared_tiles(info, stats, grid, config):
                if predictor is not None and prepared.prompts and prepared.valid.any():
                    pending.append(prepared)
                    if len(pending) == config.batch_size:
                        run_sam_batch(predictor, pending, sink, config)
                        bar.update(len(pending))
                        pending = []
                    continue
                _count_without_sam(sink.counts, prepared, predictor)
                sink.write(prepared, None)
                bar.update(1)
            if pending:
                run_sam_batch(predictor, pending, sink, config)  # type: ignore[arg-type]
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
    fraction = sink.water_pixels / sink.valid_pixels if sink.valid_pixels else 0.0
    return sink.counts, fraction, raster_outputs


def _count_without_sam(counts: TileCounts, prepared: PreparedTile, predictor: SamPredictor | None) -> None:
    """Count a tile that skips SAM: no valid data or no prompts (skipped), or no model (coarse only)."""
    if prepared.valid.any() and predictor is None:
        counts.coarse_only += 1
    else:
        counts.skipped += 1


def _partial_reason(path: Path, counts: TileCounts) -> str | None:
    """One line naming the tiles SAM could not segment, or None."""
    if not counts.failed:
        return None
    first = counts.failed_tiles[0]
    more = f" and {counts.failed - 1} more (see manifest.json)" if counts.failed > 1 else ""
    return (
        f"{path}: SAM failed on {counts.failed} tile(s), written as nodata: row {first['row']} col {first['col']} "
        f"({first['reason']}){more}; lower --batch-size or --tile-size, or use a device with more memory"
    )
