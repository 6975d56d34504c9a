"""Batches of inputs: load the model once, segment each input, keep going past failures."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import cv2
from rasterio.errors import RasterioError
from shapely.errors import ShapelyError

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import SamgeoPipelineError, first_line
from samgeo_pipeline.io.folders import check_inputs_outside
from samgeo_pipeline.io.paths import check_inside, printable
from samgeo_pipeline.models.base import Predictor
from samgeo_pipeline.models.families import FAMILIES, check_prompt
from samgeo_pipeline.outputs.manifest import Manifest
from samgeo_pipeline.outputs.stac_catalog import register_item
from samgeo_pipeline.results import SegmentResult
from samgeo_pipeline.run.image import RasterRun
from samgeo_pipeline.sam.predictor import (
    ModelSource,
    checkpoint_config,
    load_sam_model,
    resolve_device,
    resolve_dtype,
)

if TYPE_CHECKING:
    from rich.table import Table

try:  # GDAL errors rasterio does not wrap in a RasterioError (private module: guarded)
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover
    CPLE_BaseError = RasterioError

#: What one bad input file can make the stages raise (GDAL/rasterio, pyogrio's RuntimeErrors,
#: OpenCV, GEOS, NumPy/torch value and type errors, disk errors). A batch reports the file and goes
#: on. Not caught: MemoryError, KeyboardInterrupt, SystemExit (they stop the batch).
BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (
    RasterioError, CPLE_BaseError, OSError, ValueError, RuntimeError, LookupError, TypeError, ArithmeticError,
    cv2.error, ShapelyError,
)  # fmt: skip

T = TypeVar("T")

MAX_FINISHING = 2
"""Images of a batch whose tiles are done and whose outputs are still being written, at most."""


def describe_error(path: Path, exc: BaseException) -> str:
    """One line naming ``path`` and the reason (a :class:`SamgeoPipelineError`'s message already names it)."""
    text = first_line(exc) if str(exc).strip() else ""
    if isinstance(exc, SamgeoPipelineError):
        return text or f"{path}: {type(exc).__name__}"
    return f"{path}: {type(exc).__name__}: {text}"


def load_predictor(config: SegmentConfig) -> tuple[Predictor | None, ModelSource | None]:
    """The predictor of ``config.model``'s family (None, None for ``none``): see :mod:`samgeo_pipeline.models`.

    Raises:
        ModelUnavailableError: weights not loadable, or not of a supported family; the message
            says what to pass instead.
    """
    if not config.uses_sam:
        return None, None
    model, source = load_sam_model(config.model)
    check_prompt(config.prompt, source.family, config.model)  # text needs SAM 3; SAM 3 takes text only
    device = resolve_device(config.device)
    predictor = FAMILIES[source.family].predictor_class()(
        model, device, resolve_dtype(device, config.precision), attention_rows=config.attention_rows or None
    )
    return predictor, source


def describe_model(config: SegmentConfig, predictor: Predictor | None, source: ModelSource | None) -> str:
    """One line saying which model a run uses (its family first)."""
    if predictor is None or source is None:
        return "model: none (coarse water mask only, as requested with --model none)"
    dtype = str(predictor.autocast_dtype).replace("torch.", "") if predictor.autocast_dtype else "fp32"
    return f"model: {FAMILIES[source.family].label} {source} on {predictor.device}, {dtype}"


def segment_many(
    inputs: Sequence[Path],
    out_dirs: Sequence[Path],
    config: SegmentConfig,
    log: Callable[[str], None] = print,
    root: Path | None = None,
    sources: Mapping[Path, str] | None = None,
) -> list[SegmentResult]:
    """Segment each input into its folder; a failed input is reported and the others go on.

    The model is kept busy across images: this thread runs one image's tiles through it
    (:meth:`RasterRun.tiles`) while a background thread prepares the next image (checks,
    statistics) and another finishes the images before (COG, polygons, quicklook, manifest; at most
    :data:`MAX_FINISHING` waiting). Results and log lines come in input order; each image's
    warnings (no CRS, a poorly separated coarse mask) are logged as ``warning: ...`` lines and
    recorded in its manifest, and an image whose coarse rule abstained gets an ``uncertain: ...``
    line (the reason and what to do). Interrupted (Ctrl-C), the batch stops the tiles at once and
    lets the stages already running complete (the outputs of a finish are whole); the stages not
    started are dropped and their work files removed.

    Args:
        root: the output root; when given, each folder is checked to resolve inside it first
            (:func:`~samgeo_pipeline.io.paths.check_inside`), and each finished folder's STAC Item is
            listed in its ``catalog.json`` (:func:`~samgeo_pipeline.outputs.stac_catalog.register_item`).
        sources: input path -> what the user named (a STAC Item's URL for its local copy), for the
            manifests; default: the path.

    Raises:
        UnsafePathError: an input lies in an output folder of the batch, or an output name there
            leads to one (:func:`~samgeo_pipeline.io.folders.check_inputs_outside`; nothing is processed).
        ModelUnavailableError: the model cannot be loaded (nothing is processed).
    """
    check_inputs_outside(inputs, out_dirs)  # before the model loads and anything is written
    config = checkpoint_config(config)  # a fine-tuned model's preprocessing, once for the batch
    predictor, source = load_predictor(config)
    log(printable(describe_model(config, predictor, source)))
    return _Batch(config, predictor, source, log, root, sources or {}).run(list(zip(inputs, out_dirs, strict=True)))


class _Batch:
    """:func:`segment_many`'s stages on three threads: prepare (one image ahead, background), tiles
    (the calling thread: the model's), finish (background, at most :data:`MAX_FINISHING` behind)."""

    def __init__(self, config: SegmentConfig, predictor: Predictor | None, source: ModelSource | None,
                 log: Callable[[str], None], root: Path | None, sources: Mapping[Path, str]) -> None:  # fmt: skip
        self.config, self.predictor, self.source, self.log, self.root = config, predictor, source, log, root
        self.sources = sources
        self.results: list[SegmentResult] = []
        # (result to come, run it finishes), in order
        self.unreported: list[tuple[Future[SegmentResult], RasterRun | None]] = []
        self.unfinished: RasterRun | None = None  # tiles written, finish not yet queued
        self.preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samgeo-prepare")
        self.finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samgeo-finish")

    def run(self, jobs: list[tuple[Path, Path]]) -> list[SegmentResult]:
        """Every ``(input, output folder)`` of ``jobs``; the results in input order."""
        try:
            upcoming = self.preparer.submit(self._prepare, *jobs[0]) if jobs else None
            for k, job in enumerate(jobs):
                assert upcoming is not None  # submitted for every job
                prepared = upcoming.result()
                if k + 1 < len(jobs):
                    upcoming = self.preparer.submit(self._prepare, *jobs[k + 1])
                self._tiles_then_finish(job, prepared)
            self._report(block=True)
        except BaseException:
            self._stop()
            raise
        self.preparer.shutdown()
        self.finisher.shutdown()
        return self.results

    def _prepare(self, path: Path, out_dir: Path) -> RasterRun | SegmentResult:
        """A prepared run (``reused`` set when its outputs can be reused), or the failed result."""

        def prepare() -> RasterRun:
            if self.root is not None:
                check_inside(out_dir, self.root)
            run = RasterRun(path, out_dir, self.config, self.predictor, self.source, self.sources.get(path))
            run.prepare()
            return run

        return _outcome(path, out_dir, prepare)

    def _tiles_then_finish(self, job: tuple[Path, Path], prepared: RasterRun | SegmentResult) -> None:
        """Run a prepared image's tiles here, then queue its finish (a result is queued as it is).

        The image's warnings are logged here, on the calling thread, rather than issued with
        ``warnings.warn`` on the thread that prepared it (see :meth:`RasterRun.emit_warnings`).
        """
        if isinstance(prepared, RasterRun):
            for message, _ in prepared.warnings:
                self.log(printable(f"warning: {message}"))
            reused = prepared.reused
            prepared = reused if reused is not None else _outcome(*job, partial(_tiles, prepared))
        self.unfinished = prepared if isinstance(prepared, RasterRun) else None
        self._report(block=False)  # an earlier finish that ran out of memory stops the batch here
        if self.unfinished is not None:
            path, out_dir = job
            finished = self.finisher.submit(_outcome, path, out_dir, self.unfinished.finish)
            self.unreported.append((finished, self.unfinished))
            self.unfinished = None
        else:
            assert isinstance(prepared, SegmentResult)  # not a RasterRun: already a result
            self.unreported.append((_resolved(prepared), None))

    def _report(self, block: bool) -> None:
        """Report in input order what is finished (all of it when ``block``); raises what stops the batch."""
        while self.unreported and (block or self.unreported[0][0].done() or len(self.unreported) > MAX_FINISHING):
            result = _log_outcome(self.unreported.pop(0)[0].result(), self.log)
            if self.root is not None:
                _catalog(result, self.root, self.log)
            self.results.append(result)

    def _stop(self) -> None:
        """Let the running stages end, drop the others, remove the work files of tiles never finished."""
        for pool in (self.preparer, self.finisher):
            pool.shutdown(wait=True, cancel_futures=True)
        for run in [self.unfinished] + [run for future, run in self.unreported if future.cancelled()]:
            if run is not None:
                run.abort()


def _tiles(run: RasterRun) -> RasterRun:
    run.tiles()
    return run


def _outcome(path: Path, out_dir: Path, stage: Callable[[], T]) -> T | SegmentResult:
    """``stage()``, or the ``failed`` result of ``path`` when it raises an error a bad input causes."""
    failing: tuple[type[Exception], ...] = (SamgeoPipelineError, *BAD_INPUT_ERRORS)
    try:
        return stage()
    except failing as exc:
        return SegmentResult(path, out_dir, "failed", describe_error(path, exc))


def _catalog(result: SegmentResult, root: Path, log: Callable[[str], None]) -> None:
    """List a finished image's ``item.json`` in ``root/catalog.json``
    (:func:`~samgeo_pipeline.outputs.stac_catalog.register_item`); a catalog that cannot be written is
    logged, the image stays finished."""
    if result.status == "failed" or result.manifest is None:
        return
    try:
        register_item(root, result.out_dir)
    except (SamgeoPipelineError, OSError, ValueError) as exc:
        log(printable(f"error: {root}/catalog.json: not updated with {result.out_dir.name} ({exc})"))


def _resolved(result: SegmentResult) -> Future[SegmentResult]:
    """A future already holding ``result``."""
    future: Future[SegmentResult] = Future()
    future.set_result(result)
    return future


def _log_outcome(result: SegmentResult, log: Callable[[str], None]) -> SegmentResult:
    """Log a failed, reused or uncertain input (control characters of its name escaped)."""
    if result.status == "failed" or result.error:
        log(printable(f"error: {result.error}"))
    elif result.status == "skipped":
        log(printable(f"{result.input}: outputs exist with the same parameters, skipped (--overwrite to redo)"))
    if result.uncertain:
        abstention = result.manifest.uncertain if result.manifest else None
        hint = abstention.what_to_do if abstention else None
        log(printable(f"uncertain: {result.input}: the coarse rule cannot tell water from land: {result.uncertain}"
                      + (f"; {hint}" if hint else "")))
    return result


def status_label(result: SegmentResult) -> str:
    """The status as the summary shows it: ``uncertain`` (with the rule's reason on a second line)
    for an image whose coarse rule abstained, also when reused (``skipped, uncertain``)."""
    if not result.uncertain:
        return result.status
    status = "uncertain" if result.status == "uncertain" else f"{result.status}, uncertain"
    return f"{status}\n{result.uncertain}"


def coarse_label(manifest: Manifest | None) -> str:
    """The coarse-mask method and its separability (``ndwi 0.85``), ``-`` when unknown."""
    coarse = (manifest.radiometry or {}).get("coarse") if manifest else None
    if not coarse:
        return "-"
    separability = coarse.get("separability")
    method: str = coarse["method"]
    return method + (f" {separability:.2f}" if separability is not None else "")


def summary_table(results: Sequence[SegmentResult]) -> Table:
    """A rich table: one row per input with status, tiles, coarse-mask method and separability, water, seconds."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="samgeo-pipeline segment")
    columns = ("input", "status", "tiles sam/coarse/skip/fail", "coarse", "water %", "polygons", "area km²", "seconds")
    for column in columns:
        table.add_column(column, overflow="fold")
    for r in results:
        if r.status == "skipped" and r.manifest:  # reused: the counts and water of the run that made it
            m = r.manifest
            t, secs = m.tiles, None
            water, polygons, area = m.water.fraction_of_valid, m.water.polygons, m.water.area_m2
        else:
            t, secs = r.tiles, r.seconds.get("total")
            water, polygons, area = r.water_fraction, r.polygons, r.water_area_m2
        counts = f"{t.sam}/{t.coarse_only}/{t.skipped}/{t.failed}" if r.status != "failed" else "-"
        table.add_row(  # file names and errors are text, not rich markup, nor terminal control sequences
            escape(printable(r.input.name)),
            escape(status_label(r)),  # a failure's reason is on its own line above the table
            counts,
            coarse_label(r.manifest),
            f"{100 * water:.2f}" if water is not None else "-",
            str(polygons) if polygons is not None else "-",
            f"{area / 1e6:.3f}" if area is not None else "-",
            f"{secs:.1f}" if secs is not None else "-",
        )
    return table
