"""The manifest of one finished image run, assembled from the run's parts: its input, options,
model, statistics, tile grid and result (:func:`build_manifest`), and where it ran (:func:`runtime_info`).

The schema itself, its versions, reading and writing are :mod:`samgeo_pipeline.outputs.manifest`;
:class:`~samgeo_pipeline.run.image.RasterRun` builds and writes the manifest last.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.models.sam3 import prompt_record
from samgeo_pipeline.outputs.fingerprint import model_fingerprint
from samgeo_pipeline.outputs.manifest import (
    GridRecord,
    InputRecord,
    Manifest,
    ModelRecord,
    Uncertain,
    WaterRecord,
    package_versions,
)
from samgeo_pipeline.results import SegmentResult, uncertain_hint

if TYPE_CHECKING:
    from samgeo_pipeline.io.raster import RasterInfo
    from samgeo_pipeline.io.tiling import TileGrid
    from samgeo_pipeline.models.base import Predictor
    from samgeo_pipeline.sam.predictor import ModelSource
    from samgeo_pipeline.water.radiometry import ImageStats


def build_manifest(
    info: RasterInfo,
    checksum: str,
    config: SegmentConfig,
    model_source: ModelSource | None,
    predictor: Predictor | None,
    stats: ImageStats,
    grid: TileGrid,
    result: SegmentResult,
    outputs: list[Path],
    run_warnings: list[str],
    source: str | None = None,
    bands_source: str | None = None,
    runner: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest of one finished run; ``source``: the input as the user named it;
    ``runner``: who ran it, added to ``runtime`` (:func:`runtime_info`), e.g. a Prefect worker's name;
    ``bands_source``: how the band mapping was chosen when a caller chose it (a watch rule), else
    the mapping's own source (``given``, ``descriptions`` or ``guessed``). ``uncertain`` is None, or
    the rule's ``reason`` and ``what_to_do`` when it abstained on the image."""
    runtime = {**runtime_info(predictor), **(runner or {})}
    return Manifest(
        status=result.status, error=result.error, uncertain=_uncertain(result, stats),
        input=_input_record(info, checksum, source, bands_source),
        parameters=config.to_dict(), params_hash=config.params_hash(),
        prompt=prompt_record(config, stats.coarse.uncertain),
        model=ModelRecord(
            id=config.model if config.uses_sam else "none", fingerprint=model_fingerprint(config.model),
            origin=model_source.origin if model_source else "coarse mask only (--model none)",
            **_model_size(model_source, predictor),
            device=runtime["device"] if predictor else None,
            autocast=str(predictor.autocast_dtype).replace("torch.", "") if predictor and predictor.autocast_dtype else None,
        ),
        radiometry=stats.to_dict(), grid=_grid_record(grid, info, config.gsd),
        tiles=dataclasses.replace(result.tiles, failed_tiles=list(result.tiles.failed_tiles)),
        water=WaterRecord(fraction_of_valid=result.water_fraction, area_m2=result.water_area_m2,
                          polygons=result.polygons),
        seconds={k: round(v, 3) for k, v in result.seconds.items()}, runtime=runtime,
        versions=package_versions(), warnings=run_warnings, outputs=[p.name for p in outputs],
    )  # fmt: skip


def _input_record(info: RasterInfo, checksum: str, source: str | None, bands_source: str | None) -> InputRecord:
    return InputRecord(
        path=str(info.path), source=source if source is not None else str(info.path), sha256=checksum,
        bytes=info.path.stat().st_size, width=info.width, height=info.height, bands=info.count, dtype=info.dtype,
        crs=info.crs.to_string() if info.crs else None, transform=list(info.transform)[:6], nodata=info.nodata,
        nodata_source=info.nodata_source, band_map=info.bands.as_dict(),
        band_map_source=bands_source or info.bands.source,
    )  # fmt: skip


def _grid_record(grid: TileGrid, info: RasterInfo, gsd: float | None) -> GridRecord:
    from samgeo_pipeline.io.ground import gsd_note

    return GridRecord(
        tile_size=grid.tile_size, core_source_px=grid.core, halo_source_px=grid.halo,
        source_px_per_working_px=grid.scale,
        gsd_unit=None if gsd is None else "metre" if info.georeferenced else "source pixel",
        gsd_note=gsd_note(info, gsd), rows=grid.rows, cols=grid.cols,
        model_px_per_image_px=round(grid.model_pixels_per_image_pixel(), 3),
    )  # fmt: skip


def runtime_info(predictor: Predictor | None) -> dict[str, Any]:
    """Where an image ran: host, process, the device actually used (``cuda:N`` as this process
    numbers it, with the card's name; ``cpu`` for ``--model none``, whose coarse mask is computed
    on the CPU) and ``CUDA_VISIBLE_DEVICES``, which maps ``N`` to the machine's card."""
    device = predictor.device if predictor is not None else None
    label = str(device) if device is not None else "cpu"
    name: str | None = None
    if device is not None and device.type == "cuda":
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        label, name = f"cuda:{index}", torch.cuda.get_device_name(index)
    return {
        "host": platform.node(),
        "pid": os.getpid(),
        "device": label,
        "device_name": name,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def _model_size(model_source: ModelSource | None, predictor: Predictor | None) -> dict[str, Any]:
    """The manifest's ``family`` (``config.json``'s ``model_type``), ``parameters`` and ``image_size``
    (the model's input side) of the model used, all None without one; the last two None for a
    predictor without a torch model behind it (the stand-ins of tests and benchmarks)."""
    if model_source is None or predictor is None:
        return {"family": None, "parameters": None, "image_size": None}
    model: Any = getattr(predictor, "model", None)  # stand-ins of tests have none
    parameters = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None
    return {"family": model_source.family, "parameters": parameters, "image_size": getattr(predictor, "image_size", None)}


def _uncertain(result: SegmentResult, stats: ImageStats) -> Uncertain | None:
    """The manifest's ``uncertain`` entry: why the rule abstained and what the user can do."""
    if result.uncertain is None:
        return None
    return Uncertain(reason=result.uncertain, what_to_do=uncertain_hint(stats.coarse.method))


__all__ = ["build_manifest", "runtime_info"]
