"""The segment flow's tasks, one per stage of an image: expand the inputs, fetch a remote input,
prepare (inspect, hash once, decide reuse), segment (statistics, tiles on this process's GPU,
outputs, catalog). Retries are for I/O errors only; the segment task is cached by input checksum,
parameters, model and output folder. See :mod:`flows.segment` for how the flow chains them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from flows import remote as remote_store
from flows.gpu_slots import gpu_slot
from flows.inputs import expand_specs, fetch_to, remote_errors, url_path
from flows.segment_report import current_run_id, publish, remote_dir_of, runner_runtime, update_catalog
from flows.segment_steps import PREDICTORS, prepare, summarize
from samgeo_pipeline import __version__
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import ConfigError, InputError, OutputConflictError, SamgeoPipelineError
from samgeo_pipeline.outputs.fingerprint import model_fingerprint
from samgeo_pipeline.outputs.reuse import Reuse
from samgeo_pipeline.redact import redact


def _retry_on_io(task, task_run, state) -> bool:
    """Retry I/O errors (network, truncated reads); a bad raster or option is not retried."""
    try:
        state.result()
    except (InputError, ConfigError, OutputConflictError):
        return False
    except OSError:
        return True
    except BaseException:  # noqa: BLE001 - any other failure is final
        return False
    return False


def segment_cache_key(checksum: str, config: SegmentConfig, out_dir: Path) -> str:
    """Cache key of one image's segment task: input bytes, parameters, model weights
    (:func:`~samgeo_pipeline.outputs.fingerprint.model_fingerprint`, as the reuse check), output folder, version."""
    parts = [checksum, config.params_hash(), model_fingerprint(config.model), str(Path(out_dir).resolve()), __version__]
    return "samgeo-segment-" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _cache_key(context, parameters: dict[str, Any]) -> str | None:
    """Cache key of :func:`segment_image`; None (run, don't cache) for overwrite or missing outputs."""
    prepared, config = parameters["prepared"], parameters["config"]
    if config.overwrite or not prepared.get("reusable") or parameters.get("remote"):
        return None
    return segment_cache_key(prepared["sha256"], config, Path(prepared["out_dir"]))


@task(name="expand-inputs", retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_on_io)
def expand_inputs_task(inputs: list[str], exclude: str | None = None) -> list[str]:
    """Task wrapper of :func:`expand_specs`."""
    return expand_specs(inputs, exclude)


def _named(prefix: str, parameter: str):
    """A task-run name function: ``prefix`` and the file name of a (resolved) parameter."""

    def name() -> str:
        from prefect.runtime import task_run

        value = task_run.parameters.get(parameter)
        value = value.get("input") if isinstance(value, dict) else value
        return f"{prefix} {url_path(str(value)).name}" if isinstance(value, (str, Path)) else prefix  # no credentials

    return name


@task(name="fetch-input", retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=_retry_on_io,
      task_run_name=_named("fetch", "url"))
def fetch_input(url: str, staging: str) -> str:
    """Task wrapper of :func:`fetch_to` (a missing or forbidden file is not retried)."""
    return str(fetch_to(url, Path(staging)))


@task(name="prepare-image", retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_on_io,
      task_run_name=_named("prepare", "path"))
def prepare_image(
    path: str, out_dir: str, config: SegmentConfig, root: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """Task wrapper of :func:`prepare`."""
    return prepare(path, out_dir, config, root, source)


@task(
    name="segment-image",
    cache_key_fn=_cache_key,
    persist_result=True,
    result_serializer="json",
    task_run_name=_named("segment", "image"),
)
def segment_image(
    prepared: dict[str, Any], config: SegmentConfig, gpu_limit: str | None = None, image: str = "",
    remote: dict[str, Any] | None = None, bands_source: str | None = None, root: str | None = None,
) -> dict[str, Any]:
    """Segment one prepared image; holds this process's GPU (and a slot of ``gpu_limit`` when
    given) while its tiles go through the model, and the output folder's lock from its first
    write to its manifest (:class:`~samgeo_pipeline.run.image.RasterRun`).

    Temporary files a killed run left in the output folder are removed first (the lock proves
    their writer is dead; logged as a warning). ``image`` names the task run only (it is not part of the cache key).
    ``remote`` (``root``, ``local_root``, ``storage_options``): the outputs go to the store below
    ``root`` (:mod:`flows.remote`: data first, manifest last) and the reuse check reads the remote
    manifest (for a local root, :func:`prepare`'s decision holds: ``prepared["reused"]``); the
    summary then names URLs. ``bands_source``: how the watch flow chose the band
    mapping, recorded in the manifest. ``root``: the local output root, whose ``catalog.json`` lists
    the image's ``item.json`` once it is finished (:func:`update_catalog`; a remote root's catalog is
    rebuilt from the store's listing after the upload).

    Returns:
        :func:`summarize` of its manifest (status ``done``, ``skipped`` or ``uncertain``).

    Raises:
        SamgeoPipelineError: the image failed, or SAM failed on some tiles (``partial``: the
            outputs are written, with those tiles as nodata, but not cached).
    """
    logger = get_run_logger()
    out_dir = Path(prepared["out_dir"])
    remote_dir = remote_dir_of(out_dir, remote)
    reused = prepared.get("reused") if not remote_dir else None
    if remote_dir and not config.overwrite:
        with remote_errors(remote_dir):
            previous = remote_store.remote_reusable(remote_dir, prepared["sha256"], config, remote["storage_options"])
        reused = summarize(previous, "skipped", out_dir, prepared.get("source")) if previous is not None else None
    if reused is not None:
        logger.info("%s: outputs exist with the same input, parameters and model; reused", prepared.get("source"))
        update_catalog(out_dir, root, remote_dir, remote, logger)
        return publish(dict(reused), remote_dir)
    result = _segment(prepared, config, gpu_limit, logger, bands_source)  # under the folder's lock (RasterRun)
    if result.status in ("failed", "partial") or result.manifest is None:
        raise SamgeoPipelineError(result.error or f"{prepared['input']}: {result.status}")
    if remote_dir:
        with remote_errors(remote_dir):
            uploaded = remote_store.upload_outputs(out_dir, remote_dir, remote["storage_options"])
        logger.info("%s: uploaded %s to %s (manifest.json last)", prepared.get("source"), ", ".join(uploaded),
                    redact(remote_dir))
    update_catalog(out_dir, root, remote_dir, remote, logger)
    return publish(summarize(result.manifest, result.status, out_dir, prepared.get("source")), remote_dir)


def _segment(prepared: dict[str, Any], config: SegmentConfig, gpu_limit: str | None, logger, bands_source=None):
    """:class:`~samgeo_pipeline.run.image.RasterRun`'s stages, holding the GPU (:func:`gpu_slot`) for
    the tiles only: the statistics before and the COG, polygons and quicklook after run beside
    another image's tiles."""
    from samgeo_pipeline.run.image import RasterRun

    predictor, model_source = PREDICTORS.get(current_run_id(), config, logger.info)
    run = RasterRun(Path(prepared["input"]), Path(prepared["out_dir"]), config, predictor, model_source,
                    source=prepared.get("source"), bands_source=bands_source, runner=runner_runtime(),
                    reuse=Reuse(prepared["sha256"]))  # prepare decided: hashed once, not reused
    reused = run.prepare()
    for message, _ in run.warnings:  # logged: Python's warnings are not thread-safe (RasterRun.emit_warnings)
        logger.warning(message)
    if reused is not None:
        return reused
    if not run.abstains:  # an uncertain image has no tiles to run: it does not wait for the GPU
        asked = time.monotonic()
        with gpu_slot(gpu_limit):
            if gpu_limit:
                logger.info("%s: holding a slot of %r after %.1f s of waiting", prepared.get("source"), gpu_limit,
                            time.monotonic() - asked)
            run.tiles()
    return run.finish()
