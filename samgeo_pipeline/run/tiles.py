"""One image's tile loop: every tile through the coarse mask and, where it has prompts (or text),
the model, in batches, into the output work files (:class:`~samgeo_pipeline.run.sink.TileSink`).

Tiles come from the reader threads in grid order (:func:`~samgeo_pipeline.run.prepare.prepared_tiles`);
this is the only stage of a run that uses the model.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.io.raster import RasterInfo
from samgeo_pipeline.io.tiling import TileGrid
from samgeo_pipeline.models.base import Predictor
from samgeo_pipeline.outputs.manifest import TileCounts
from samgeo_pipeline.run.inference import run_sam_batch
from samgeo_pipeline.run.prepare import PreparedTile, prepared_tiles
from samgeo_pipeline.run.sink import TileSink
from samgeo_pipeline.run.text_prompts import tile_needs_model
from samgeo_pipeline.water.radiometry import ImageStats


def segment_tiles(
    path: Path,
    out_dir: Path,
    info: RasterInfo,
    stats: ImageStats,
    grid: TileGrid,
    config: SegmentConfig,
    predictor: Predictor | None,
) -> TileSink:
    """Every tile through the coarse mask and (with prompts) SAM into the output work files.

    Returns:
        The sink holding the written work files (its ``finish`` makes the COGs); on error no work
        file is left behind.
    """
    sink = TileSink(info, config, out_dir)
    sink.counts.total = len(grid)
    try:
        with tqdm(total=len(grid), desc=path.name, unit="tile", disable=not config.progress, leave=False) as bar:
            pending: list[PreparedTile] = []
            for prepared in prepared_tiles(info, stats, grid, config):
                if predictor is not None and _needs_model(prepared, config):
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
    except BaseException:
        sink.remove_work()
        raise
    return sink


def _needs_model(prepared: PreparedTile, config: SegmentConfig) -> bool:
    """Whether a tile goes to the model: valid data, and prompts (text: see
    :func:`~samgeo_pipeline.run.text_prompts.tile_needs_model`)."""
    if not prepared.valid.any():
        return False
    return tile_needs_model(prepared, config.text_combine) if config.prompt == "text" else bool(prepared.prompts)


def _count_without_sam(counts: TileCounts, prepared: PreparedTile, predictor: Predictor | None) -> None:
    """Count a tile that skips SAM: no valid data or no prompts (skipped), or no model (coarse only)."""
    if prepared.valid.any() and predictor is None:
        counts.coarse_only += 1
    else:
        counts.skipped += 1


def partial_reason(path: Path, counts: TileCounts) -> str | None:
    """One line naming the tiles SAM could not segment, or None."""
    if not counts.failed:
        return None
    first = counts.failed_tiles[0]
    more = f" and {counts.failed - 1} more (see manifest.json)" if counts.failed > 1 else ""
    return (
        f"{path}: SAM failed on {counts.failed} tile(s), written as nodata: row {first['row']} col {first['col']} "
        f"({first['reason']}){more}; lower --batch-size or --tile-size, or use a device with more memory"
    )
