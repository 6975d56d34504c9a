"""Segment one raster end to end: stats, tiles (coarse mask, prompts, SAM), mask COG, polygons,
quicklook and manifest.

This module only orchestrates the stages: :mod:`~samgeo_pipeline.run.prepare` prepares tiles on reader
threads, :mod:`~samgeo_pipeline.run.inference` batches tiles that have prompts through SAM,
:mod:`~samgeo_pipeline.run.sink` writes each tile's core, :mod:`~samgeo_pipeline.run.image_manifest`
builds the manifest. Tiles without coarse water or without valid data skip SAM. Each image's warnings
are collected in its own list (recorded in its manifest), so images run concurrently never see each other's.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import (
    CoarseMaskWarning,
    NodataWarning,
    NotGeoreferencedWarning,
    SamgeoPipelineError,
    SamgeoPipelineWarning,
)
from samgeo_pipeline.io.bands import guessed_bands_message
from samgeo_pipeline.io.folders import (
    check_inputs_outside,
    clear_stale_outputs,
    output_identities,
    output_lock,
    remove_new_outputs,
    remove_partials,
)
from samgeo_pipeline.io.gdal_env import gdal_env
from samgeo_pipeline.io.ground import gsd_note
from samgeo_pipeline.io.limits import check_free_disk, check_size
from samgeo_pipeline.io.raster import RasterInfo, inspect_raster, not_georeferenced_message
from samgeo_pipeline.io.stac_input import StacInput, StacWorkspace, check_no_bands, is_stac_item, open_stac_item
from samgeo_pipeline.io.tiling import TileGrid
from samgeo_pipeline.io.zero_collar import zero_collar_message
from samgeo_pipeline.models.base import Predictor
from samgeo_pipeline.outputs.fingerprint import file_sha256
from samgeo_pipeline.outputs.manifest import TileCounts, write_manifest
from samgeo_pipeline.outputs.quicklook import draw_quicklook, write_quicklook
from samgeo_pipeline.outputs.reuse import Reuse, decide_reuse
from samgeo_pipeline.outputs.stac import ITEM_NAME, acquisition_datetime, read_tags, write_item
from samgeo_pipeline.outputs.vectorize import write_polygons
from samgeo_pipeline.redact import redact
from samgeo_pipeline.results import SegmentResult, Status
from samgeo_pipeline.run.image_manifest import build_manifest
from samgeo_pipeline.run.image_stats import abstains, image_stats
from samgeo_pipeline.run.prepare import release_free_memory
from samgeo_pipeline.run.sink import TileSink
from samgeo_pipeline.run.text_prompts import for_image
from samgeo_pipeline.run.tiles import partial_reason, segment_tiles
from samgeo_pipeline.sam.predictor import ModelSource, checkpoint_config
from samgeo_pipeline.water.coarse import rule_warnings
from samgeo_pipeline.water.radiometry import ImageStats

__all__ = ["segment_raster", "RasterRun", "SegmentResult", "Status"]


def segment_raster(
    path: Path,
    out_dir: Path,
    config: SegmentConfig,
    predictor: Predictor | None = None,
    model_source: ModelSource | None = None,
    source: str | None = None,
    bands_source: str | None = None,
) -> SegmentResult:
    """Segment one raster into ``out_dir`` (mask.tif, water.gpkg, quicklook.png, item.json, manifest.json).

    The three stages of :class:`RasterRun` in order, on this thread.

    Args:
        path: input GeoTIFF / COG / VRT.
        out_dir: this input's output folder (created).
        config: options. For a fine-tuned ``config.model``, its composite, percentiles and band
            mapping apply (:func:`~samgeo_pipeline.sam.predictor.checkpoint_config`).
        predictor: loaded SAM, or None when ``config.model`` is ``none``.
        model_source: where the weights came from (manifest).
        source: the input as the user named it (a URL for a staged remote copy); default: ``path``
            resolved. The manifest records it, credentials hidden
            (:func:`~samgeo_pipeline.redact.redact`) (and ``bands_source``: how a caller such as the watch
            flow chose ``config.bands``, beside the mapping); outputs of another source with other bytes are not
            replaced without ``overwrite`` (:func:`~samgeo_pipeline.outputs.reuse.check_folder_owner`).

    Returns:
        The result: ``done``, ``skipped`` (reused), ``partial`` when SAM ran out of memory on
        some tiles even one at a time (written as nodata, listed in the manifest), or ``uncertain``
        when the image's coarse rule cannot tell water from land (``CoarseRule.uncertain``): with
        ``on_uncertain="skip"`` SAM is not run and only quicklook.png (the rule's candidate water
        outlined) and manifest.json are written; with ``write`` the image runs as usual. Errors a user can
        cause raise :class:`SamgeoPipelineError` (one-line message; SAM failing for another reason
        raises :class:`~samgeo_pipeline.errors.SamInferenceError`); no partial output is left under
        a final name. Inputs over the size limits are refused before any read
        (:mod:`samgeo_pipeline.io.limits`).
    """
    run = RasterRun(path, out_dir, checkpoint_config(config), predictor, model_source, source, bands_source)
    reused = run.prepare()
    run.emit_warnings()
    if reused is not None:
        return reused
    run.tiles()
    return run.finish()


class RasterRun:
    """One raster's segmentation in three stages, so that only the middle one needs the model.

    1. :meth:`prepare`: inspect, reuse and size checks, whole-image statistics (reads the input);
    2. :meth:`tiles`: coarse mask, prompts and SAM per tile, each core into the mask's work file;
    3. :meth:`finish`: mask COG and polygons at once (both read the work file), quicklook, manifest.

    An image whose rule abstains (:attr:`abstains`) skips :meth:`tiles`, and :meth:`finish` writes
    its quicklook and manifest only.

    A caller running several images keeps one GPU busy by holding it for :meth:`tiles` only: one
    image's tiles go through the model while another image prepares or finishes on other threads
    (:func:`~samgeo_pipeline.run.batch.segment_many`, the Prefect flow). The stages of one run are
    called in order, each once, from any thread (each opens its own GDAL environment); the
    arguments are those of :func:`segment_raster` (``config`` as the model needs it: the caller
    applies :func:`~samgeo_pipeline.sam.predictor.checkpoint_config` once per run), plus
    ``runner``: who runs it (a Prefect worker's name and flow run), recorded in the manifest's
    ``runtime``, and ``reuse``: the caller's reuse decision
    (:func:`~samgeo_pipeline.outputs.reuse.decide_reuse`, made by the flow's prepare
    task, which hashed the input): the run then neither hashes the input nor decides again.
    """

    info: RasterInfo  # set by prepare
    grid: TileGrid
    checksum: str
    stats: ImageStats
    preview: np.ndarray
    candidate: np.ndarray | None  # the rule's water at the preview's size, when the run abstains

    def __init__(
        self,
        path: Path,
        out_dir: Path,
        config: SegmentConfig,
        predictor: Predictor | None = None,
        model_source: ModelSource | None = None,
        source: str | None = None,
        bands_source: str | None = None,
        runner: dict[str, Any] | None = None,
        reuse: Reuse | None = None,
    ) -> None:
        if config.uses_sam and predictor is None:
            raise SamgeoPipelineError(f"model {config.model!r} requested but no predictor was loaded")
        self.path, self.out_dir, self.config = Path(path), Path(out_dir), config
        self.predictor, self.model_source, self.bands_source = predictor, model_source, bands_source
        self.runner = runner  # who runs it (e.g. a Prefect worker), for the manifest's runtime
        self.reuse = reuse  # decided by the caller, else by prepare
        self.source = redact(source) if source is not None else str(self.path.resolve())  # written, shown
        self.seconds: dict[str, float] = {}
        self.warnings: list[tuple[str, type[SamgeoPipelineWarning]]] = []  # this image's own (manifest)
        self._sink: TileSink | None = None  # tiles written, COG not yet made
        self._lock = ExitStack()  # the output folder's lock, from prepare's first write to the manifest
        self.reused: SegmentResult | None = None  # set by prepare when the outputs can be reused
        self.stac: StacInput | None = None  # a STAC Item input: read through its VRT (prepare)
        self._workspace: StacWorkspace | None = None  # the VRT's temporary folder, until finish or abort

    def prepare(self) -> SegmentResult | None:
        """Checks and statistics; returns the earlier result (``skipped``) when the outputs can be reused."""
        try:
            reused = self._prepare()
        except BaseException:
            self._close_workspace()
            raise
        if reused is not None:
            self._close_workspace()
        return reused

    def _prepare(self) -> SegmentResult | None:
        t0 = time.perf_counter()
        path, config = self.path, self.config
        check_inputs_outside([path], [self.out_dir])  # before anything is read or written
        with gdal_env():
            self.info = self._inspect()
            if not self.info.georeferenced:
                self.warnings.append((not_georeferenced_message(path), NotGeoreferencedWarning))
            self.grid = check_size(self.info, config)  # before any read: a header can claim any size
            if (note := gsd_note(self.info, config.gsd)) is not None:  # --gsd in metres on a CRS in degrees
                self.warnings.append((note, SamgeoPipelineWarning))
            if self.bands_source and self.bands_source.startswith("guessed"):  # a caller's guess (the watch flow)
                self.warnings.append((guessed_bands_message(path, self.info.bands, self.bands_source),
                                      SamgeoPipelineWarning))
            if self.reuse is None:
                checksum = self.stac.checksum if self.stac else file_sha256(path)
                self.reuse = decide_reuse(self.out_dir, checksum, config, self.source)
            self.checksum = self.reuse.checksum
            self.seconds["inspect"] = time.perf_counter() - t0
            if (previous := self.reuse.previous) is not None:
                uncertain = previous.uncertain.reason if previous.uncertain else None
                self.reused = SegmentResult(path, self.out_dir, "skipped", manifest=previous,
                                            uncertain=uncertain)  # fmt: skip
                return self.reused
            check_free_disk(self.info, config, self.out_dir)
            t = time.perf_counter()
            self.stats, self.preview, self.candidate, self.info, collar = image_stats(self.info.path, self.info, config)
            self.seconds["stats"] = time.perf_counter() - t
        release_free_memory()
        if self.info.nodata_source == "zero collar":
            self.warnings.append((zero_collar_message(path, collar), NodataWarning))
        self.warnings += [(message, CoarseMaskWarning) for message in rule_warnings(self.stats.coarse, str(path))]
        self._lock.enter_context(output_lock(self.out_dir))  # held until finish() or abort()
        try:
            for leftover in remove_partials(self.out_dir):
                self.warnings.append((f"{self.out_dir}: removed {leftover.name}, left by a run that died while "
                                      "writing it", SamgeoPipelineWarning))
            clear_stale_outputs(self.out_dir, config.probability, self.abstains)
        except BaseException:
            self._lock.close()
            raise
        return None

    def _inspect(self) -> RasterInfo:
        """The input's :class:`RasterInfo`; a STAC Item is opened as the VRT of its mapped assets
        (:mod:`~samgeo_pipeline.io.stac_input`), its band mapping taken from the Item (``stac``)."""
        config = self.config
        if not is_stac_item(self.path):
            return inspect_raster(self.path, config.bands, config.nodata, warn=False)
        check_no_bands(self.path, config.bands)
        self._workspace = StacWorkspace()
        self.stac = open_stac_item(self.path, self._workspace.folder)
        local_assets = [Path(s.href) for s in self.stac.sources.values() if not s.href.startswith("/vsi")]
        check_inputs_outside(local_assets, [self.out_dir])  # an asset is an input too
        info = inspect_raster(self.stac.vrt, self.stac.bands.as_dict(), config.nodata, warn=False)
        return dataclasses.replace(info, bands=self.stac.bands)

    def _close_workspace(self) -> None:
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None

    @property
    def abstains(self) -> bool:
        """The image's rule is uncertain and ``on_uncertain`` is ``skip``: no tiles, no mask (after :meth:`prepare`)."""
        return abstains(self.stats, self.config)

    def emit_warnings(self) -> None:
        """Issue :meth:`prepare`'s warnings with ``warnings.warn``, from the calling thread.

        :meth:`prepare` only collects them: Python's warning filters are process-wide, and a
        library's ``catch_warnings()`` block on another thread (pandas, geopandas, shapely do this)
        can swallow a warning issued meanwhile. Batches log them from one thread instead
        (:func:`~samgeo_pipeline.run.batch.segment_many`).
        """
        for message, category in self.warnings:
            warnings.warn(message, category, stacklevel=2)

    def tiles(self) -> None:
        """Every tile through the coarse mask and (with prompts) SAM into the mask's work file."""
        if self.abstains:  # no SAM time on a mask nobody trusts
            return
        t = time.perf_counter()
        try:
            with gdal_env():
                config = for_image(self.config, self.stats.coarse.uncertain)  # text: no combining when uncertain
                self._sink = segment_tiles(self.path, self.out_dir, self.info, self.stats, self.grid, config,
                                            self.predictor)
        except BaseException:
            self._lock.close()  # no work file is left (segment_tiles removed them)
            self._close_workspace()
            raise
        self.seconds["tiles"] = time.perf_counter() - t
        release_free_memory()

    def finish(self) -> SegmentResult:
        """The mask COG (and probability COG), polygons, quicklook and manifest; the result.

        The manifest is written last; if anything fails before it is in place (a full disk, say),
        the outputs this run had already put in place are removed again, so no output is left
        without its manifest (outputs of earlier runs are left as they are).
        """
        try:
            if self.abstains:
                return self._finish_uncertain()
            return self._finish_locked()
        finally:
            self._close_workspace()

    def _finish_locked(self) -> SegmentResult:
        sink, self._sink = self._sink, None
        if sink is None:
            raise SamgeoPipelineError(f"{self.path}: finish() before tiles()")
        with self._lock:  # released once the manifest is written, or on failure
            before = output_identities(self.out_dir)
            try:
                return self._finish(sink)
            except BaseException:
                remove_new_outputs(self.out_dir, before)
                raise

    def _finish(self, sink: TileSink) -> SegmentResult:
        out_dir, seconds = self.out_dir, self.seconds
        t = time.perf_counter()
        raster_outputs, (n_polygons, area_m2) = _cogs_and_polygons(sink, out_dir / "water.gpkg", self.config, seconds)
        rasters_and_polygons = time.perf_counter() - t  # the two overlap
        release_free_memory()
        with gdal_env():
            t = time.perf_counter()
            write_quicklook(self.preview, out_dir / "mask.tif", out_dir / "quicklook.png")
            seconds["quicklook"] = time.perf_counter() - t

        counts = sink.counts
        fraction = sink.water_pixels / sink.valid_pixels if sink.valid_pixels else 0.0
        uncertain = self.stats.coarse.uncertain
        status: Status = "partial" if counts.failed else "uncertain" if uncertain else "done"
        reason = partial_reason(self.path, counts)
        result = SegmentResult(self.path, out_dir, status, reason, counts, fraction, area_m2, n_polygons, seconds,
                               uncertain=uncertain)  # fmt: skip
        # this image's own time, not the waits between stages; the COGs and the polygons overlap
        seconds["total"] = sum(v for k, v in seconds.items() if k not in ("cog", "vectorize")) + rasters_and_polygons
        return self._with_manifest(result, [*raster_outputs, out_dir / "water.gpkg", out_dir / "quicklook.png"])

    def _finish_uncertain(self) -> SegmentResult:
        """An abstaining image's quicklook (the rule's candidate water outlined) and manifest; every tile skipped."""
        t = time.perf_counter()
        candidate = self.candidate if self.candidate is not None else np.zeros(self.preview.shape[:2], np.uint8)
        quicklook = draw_quicklook(self.preview, candidate, self.out_dir / "quicklook.png")
        self.seconds["quicklook"] = time.perf_counter() - t
        self.seconds["total"] = sum(self.seconds.values())
        tiles = TileCounts(total=len(self.grid), skipped=len(self.grid))
        result = SegmentResult(self.path, self.out_dir, "uncertain", None, tiles, seconds=self.seconds,
                               uncertain=self.stats.coarse.uncertain)  # fmt: skip
        return self._with_manifest(result, [quicklook])

    def _with_manifest(self, result: SegmentResult, outputs: list[Path]) -> SegmentResult:
        """``result`` with its STAC Item and manifest built and written (the manifest last: its presence
        means the run finished)."""
        bands_source = self.bands_source or ("STAC eo:bands" if self.stac else None)
        manifest = build_manifest(
            self.info, self.checksum, self.config, self.model_source, self.predictor, self.stats, self.grid, result,
            [*outputs, self.out_dir / ITEM_NAME], [message for message, _ in self.warnings], self.source, bands_source,
            self.runner,
        )
        manifest.input.datetime = acquisition_datetime(read_tags(self.info.path), self.path.name)
        if self.stac is not None:  # the Item is the input; its VRT is gone after the run
            manifest.input.path, manifest.input.bytes = str(self.path), self.path.stat().st_size
            manifest.input.stac = self.stac.manifest_entry()
        result.manifest = manifest
        write_item(self.out_dir, manifest)
        write_manifest(self.out_dir / "manifest.json", manifest)
        return result

    def abort(self) -> None:
        """Delete the work files of tiles written but never finished (a batch stopped in between)."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.remove_work()
        self._lock.close()
        self._close_workspace()


def _cogs_and_polygons(
    sink: TileSink, gpkg: Path, config: SegmentConfig, seconds: dict[str, float]
) -> tuple[list[Path], tuple[int, float | None]]:
    """The COGs and the polygons at once, both from the sink's finished work files.

    GDAL compresses the COGs on a second thread without the GIL while the polygons are traced on
    this one (GDAL's polygonize holds it), so the COGs cost no wall time on a machine with a core
    to spare. The work files are deleted once both are done, whether or not they succeeded.

    Returns:
        ``(COG paths, (polygon count, water area in m² or None))``; ``seconds`` gets ``cog`` and
        ``vectorize``.
    """

    def cogs() -> list[Path]:
        t = time.perf_counter()
        with gdal_env(read_once=True):  # GDAL's options are per thread
            paths = sink.make_cogs()
        seconds["cog"] = time.perf_counter() - t
        return paths

    try:
        mask_work = sink.close()  # raises if a block was never written (a full disk)
        with ThreadPoolExecutor(1, thread_name_prefix="samgeo-cog") as pool:
            made = pool.submit(cogs)  # the pool waits for it, even if the polygons fail
            t = time.perf_counter()
            polygons = write_polygons(mask_work, gpkg, config.simplify)
            seconds["vectorize"] = time.perf_counter() - t
            return made.result(), polygons
    finally:
        sink.remove_work()

