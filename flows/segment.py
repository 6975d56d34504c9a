"""Prefect flow ``segment``: the library's stages as tasks, one image at a time on this process's GPU.

A fleet is one worker per GPU (``prefect worker start --pool gpu --limit 1`` with its own
``CUDA_VISIBLE_DEVICES``): each flow run uses the GPU of the worker that runs it, and its images
take that GPU one at a time (a lock in the flow process), so runs spread over the workers and no
two images share a GPU. ``gpu_limit`` (off by default) names a server-wide concurrency limit to
hold as well.

Per image: fetch (remote URLs only; I/O, retried) -> prepare (inspect + SHA-256 + the reuse decision,
:func:`~samgeo_pipeline.outputs.reuse.decide_reuse`: the input is hashed and reuse decided once; CPU,
retried on I/O errors) -> segment (statistics, tiles through SAM, COG, polygons, quicklook; holds
the process's GPU lock for the tiles only and the output folder's lock throughout, removes the
temporary files a killed run left there; cached by input checksum + parameters + model + output
folder, results persisted; the finished image's ``item.json`` is then listed in the root's STAC
``catalog.json``) -> artifacts (a table and links per image, a markdown summary and a link to the
catalog per run).
Images run in a bounded thread pool (``SAMGEO_FLOW_WORKERS``, default 4): while one image's tiles
hold the GPU, the others compute statistics or write outputs (the CPU stage can run on a Dask
cluster, ``dask_address``). A failed image does not stop the others (a remote input that cannot be
fetched is one failed image too); the run ends Failed, with every reason, when any image failed.
An image whose coarse rule cannot tell water from land (status ``uncertain``: no SAM and no mask
unless ``on_uncertain: write``) is not a failure: the run ends Completed, with a warning in its log
naming each such image and its reason, the reason in the image's table artifact and an
"Uncertain" section in the run's summary. Sources, links, logs and errors show URLs with their
credentials hidden (:mod:`samgeo_pipeline.redact`).

Run it locally with ``python flows/segment.py INPUT... --out DIR [--model none]`` or deploy it
with ``deployments/prefect.yaml``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # Prefect loads this file by path; the other `flows` modules live beside it
    sys.path.insert(0, _REPO)

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.futures import wait
from prefect.runtime import flow_run as runtime_flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows import remote as remote_store
from flows import segment_steps
from flows.gpu_slots import ensure_concurrency_limit
from flows.inputs import image_output_dirs, is_remote, local_path, remove_staged, remove_stale_staging
from flows.links import base_url, output_links
from flows.segment_report import (
    collect_summary,
    current_run_id,
    failure_reason,
    image_artifacts,
    run_markdown,
    storage_options,
    warn_uncertain,
    worker_runtime,
)
from flows.segment_steps import PREDICTORS, build_config
from flows.segment_tasks import expand_inputs_task, fetch_input, prepare_image, segment_image
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import SamgeoPipelineError
from samgeo_pipeline.io.folders import check_inputs_outside
from samgeo_pipeline.outputs.stac_catalog import CATALOG_NAME
from samgeo_pipeline.redact import redact, redact_options

#: Threads of the flow's task runner (CPU/I-O stages of several images at once).
FLOW_WORKERS = int(os.environ.get("SAMGEO_FLOW_WORKERS", "4"))
#: Attempts of one flow run after crashes (a dead worker or process; the recovery automations of
#: ``flows/recovery.py`` reschedule a crashed run): the run fails at once when started more often.
MAX_ATTEMPTS = int(os.environ.get("SAMGEO_MAX_ATTEMPTS", "3"))


class SegmentFlowError(SamgeoPipelineError):
    """Some images of a segment run failed; the message lists each one with its reason."""



# --------------------------------------------------------------------------- flow


def _dask_runner(address: str, cluster_kwargs: dict[str, Any] | None):
    """A DaskTaskRunner for ``address`` (``local``: a temporary LocalCluster)."""
    import cloudpickle
    from prefect_dask import DaskTaskRunner

    for module in (sys.modules[__name__], segment_steps):  # Dask workers need not import these files
        cloudpickle.register_pickle_by_value(module)
    if address == "local":
        return DaskTaskRunner(cluster_kwargs=cluster_kwargs or {"n_workers": min(4, os.cpu_count() or 1),
                                                                "threads_per_worker": 1})
    return DaskTaskRunner(address=address)


@flow(name="segment-prepare", log_prints=True)
def prepare_stage(
    paths: list[str], out_dirs: list[str], config: SegmentConfig, root: str | None = None,
    sources: list[str] | None = None,
) -> list[dict[str, Any]]:
    """CPU stage of many images on the subflow's task runner (Dask); failures come back as ``{"error": ...}``."""
    sources = sources or list(paths)
    futures = [prepare_image.submit(p, d, config, root, s) for p, d, s in zip(paths, out_dirs, sources, strict=True)]
    wait(futures)
    out = []
    for path, fut in zip(paths, futures, strict=True):
        value = fut.state.result(raise_on_failure=False)
        out.append(value if isinstance(value, dict) else {"input": path, "error": failure_reason(path, value)})
    return out


@flow(name="segment", task_runner=ThreadPoolTaskRunner(max_workers=FLOW_WORKERS), log_prints=True)
def segment_flow(
    inputs: list[str],
    output_root: str,
    options: dict[str, Any] | None = None,
    config_path: str | None = None,
    relative_to: str | None = None,
    output_base_url: str | None = None,
    gpu_limit: str | None = None,
    dask_address: str | None = None,
    dask_cluster_kwargs: dict[str, Any] | None = None,
    bands_source: str | None = None,
    output_storage_options: dict[str, Any] | None = None,
    output_credentials_block: str | None = None,
) -> list[dict[str, Any]]:
    """Segment rasters into ``output_root/<image>/`` (mask.tif, water.gpkg, quicklook.png, manifest.json).

    Args:
        inputs: files, folders, glob patterns or fsspec URLs (``s3://bucket/scenes/*.tif``).
        output_root: local folder, or an fsspec URL a fleet shares (``s3://bucket/outputs``: each
            image is written in a local temporary folder, then uploaded, see :mod:`flows.remote`);
            one sub-folder per image.
        options: segment options by name (as :class:`SegmentConfig` / the CLI flags with ``_``),
            e.g. ``{"model": "none", "gsd": 0.5}``; they win over ``config_path``.
        config_path: YAML file of options.
        relative_to: keep each input's folder relative to this root in the output (watch flow).
        output_base_url: start of the artifact links (default ``$SAMGEO_OUTPUT_BASE_URL`` or
            ``http://127.0.0.1:8000/``, where ``samgeo-pipeline serve OUTPUT_ROOT`` listens).
        gpu_limit: a global concurrency limit to hold as well while an image is segmented (default
            none: the worker's ``--limit 1`` and the process's GPU lock keep one image per GPU).
        dask_address: run the CPU stage on Dask: a scheduler address, or ``local`` for a
            temporary LocalCluster (default ``$SAMGEO_DASK_ADDRESS``; unset: the thread pool).
        dask_cluster_kwargs: LocalCluster options for ``dask_address="local"``.
        output_storage_options: fsspec options of a URL ``output_root`` (e.g. ``{"endpoint_url":
            "http://127.0.0.1:9000"}``); links then start at the endpoint's URL of ``output_root``
            unless ``output_base_url`` says otherwise.
        output_credentials_block: name of a Prefect ``Secret`` block holding a JSON object of
            fsspec options with the store's credentials (``{"key": ..., "secret": ...}`` for S3),
            added to ``output_storage_options`` in the flow process only (never a parameter, a
            log line or a link); without it the worker's environment (``AWS_*``) is used.
        bands_source: how the watch flow chose ``options["bands"]`` (a rule, the file's band
            descriptions, or a guess from the band count): logged and put in the summaries.

    Returns:
        One summary per image (paths, counts, water area; no arrays).

    Raises:
        SegmentFlowError: some image failed, or the run was started more than ``MAX_ATTEMPTS``
            times (it crashed each time); the message lists each reason.
    """
    logger = get_run_logger()
    _start_attempt(logger, inputs, (options or {}).get("bands", "auto"), bands_source)
    from samgeo_pipeline.sam.predictor import checkpoint_config  # torch: imported once the run starts

    config = checkpoint_config(build_config(options, config_path))  # the model's preprocessing, once per run
    root, remote, base = _output_place(output_root, output_base_url, output_storage_options, output_credentials_block,
                                       logger)
    shown_root = redact(output_root) if remote else root  # links and summaries: no credentials
    dask_address = dask_address or os.environ.get("SAMGEO_DASK_ADDRESS") or None
    if gpu_limit and not ensure_concurrency_limit(gpu_limit, 1, logger):
        gpu_limit = None
    specs = expand_inputs_task(inputs, None if remote else str(root))  # outputs are never inputs
    out_dirs = [str(d) for d in image_output_dirs(specs, root, relative_to)]
    staging = root / ".samgeo-staging"
    staged = [staging] if any(is_remote(s) for s in specs) else []  # where remote inputs are copied
    check_inputs_outside([local_path(s) for s in specs if not is_remote(s)] + staged, out_dirs)
    logger.info("%d image(s) -> %s (params %s, model %s)", len(specs), shown_root,
                config.params_hash(), config.model)

    for stale in remove_stale_staging(staging):
        logger.warning("removed %s, the staged copies of a run that died", stale)
    fetched = [fetch_input.submit(s, str(staging)) if is_remote(s) else local_path(s) for s in specs]
    try:
        summaries = _process([redact(s) for s in specs], fetched, out_dirs, root, base, config, gpu_limit,
                             dask_address, dask_cluster_kwargs, remote, bands_source)
    finally:
        _remove_staged_copies(fetched, staging)
        if remote:
            shutil.rmtree(root, ignore_errors=True)
    for summary in summaries:
        summary.update(worker=worker_runtime(), bands_source=bands_source)
    _publish_run(summaries, shown_root, base)
    warn_uncertain(summaries, logger)
    failed = [s for s in summaries if s["status"] == "failed"]
    if failed:
        reasons = "\n".join(f"- {s['error']}" for s in failed)
        raise SegmentFlowError(f"{len(failed)} of {len(summaries)} image(s) failed:\n{reasons}")
    return summaries


def _start_attempt(logger, inputs: list[str], bands: str, bands_source: str | None) -> None:
    """Log the attempt and where it runs; after a crash, end the dead attempt's task runs.

    Raises:
        SegmentFlowError: the run was started more than ``MAX_ATTEMPTS`` times.
    """
    attempt = int(runtime_flow_run.run_count or 1)
    logger.info("attempt %d on %s, CUDA_VISIBLE_DEVICES=%s", attempt, socket.gethostname(),
                os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"))
    if attempt > 1:
        _end_dead_attempt_tasks(logger)
    if attempt > MAX_ATTEMPTS:
        raise SegmentFlowError(f"{redact(str(inputs))}: run started {attempt} times, crashing each time (worker or "
                               f"process died); giving up after SAMGEO_MAX_ATTEMPTS={MAX_ATTEMPTS}, see the earlier logs")
    if bands_source:
        log = logger.warning if bands_source.startswith("guessed") else logger.info
        log("bands %s: %s", bands, bands_source)


def _output_place(output_root: str, output_base_url: str | None, output_storage_options: dict[str, Any] | None,
                  output_credentials_block: str | None, logger) -> tuple[Path, dict[str, Any] | None, str]:
    """Where this run writes: ``(local root, remote upload settings or None, base URL of the links)``.

    A URL ``output_root`` is written in a temporary local folder (this run's, removed at its end)
    and uploaded (:mod:`flows.remote`); the base URL has its credentials hidden.
    """
    if not is_remote(output_root):
        root = Path(output_root).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return root, None, redact(base_url(output_base_url))
    root = Path(tempfile.mkdtemp(prefix="samgeo-outputs-"))
    remote = {"root": output_root, "local_root": str(root),
              "storage_options": storage_options(output_storage_options, output_credentials_block)}
    shown_options = redact_options(output_storage_options)  # the real ones are used for the uploads
    logger.info("outputs go to %s with storage options %s", redact(output_root), shown_options)
    return root, remote, redact(base_url(output_base_url or remote_store.store_base_url(output_root, shown_options)))


def _publish_run(summaries: list[dict[str, Any]], shown_root: Path | str, base: str) -> None:
    """The run's artifacts: the summary table, and a link to the STAC catalog when an image finished."""
    create_markdown_artifact(run_markdown(summaries, shown_root, base), key="segment-run-summary",
                             description=f"segment run: {len(summaries)} image(s)")
    if any(s["status"] != "failed" for s in summaries):
        create_link_artifact(base + CATALOG_NAME, link_text="STAC catalog of the outputs",
                             description=f"catalog.json of {shown_root}: one STAC Item per finished image")


def _end_dead_attempt_tasks(logger) -> None:
    """Mark ``Crashed`` the task runs an earlier attempt of this flow run left ``Pending`` or
    ``Running`` (its process died with them; this attempt has started none yet), so the run's task
    list does not show a dead segment task running for good. An API error is logged, not raised."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    unfinished = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(
        any_=[StateType.PENDING, StateType.RUNNING])))
    try:
        with get_client(sync_client=True) as client:
            stale = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runtime_flow_run.id])),
                                          task_run_filter=unfinished)
            for task_run in stale:
                client.set_task_run_state(task_run.id, Crashed(message="its flow process died (an earlier attempt)"),
                                          force=True)
    except Exception as exc:  # noqa: BLE001 - cosmetic: the attempt goes on without it
        logger.warning("cannot mark the dead attempt's task runs crashed (%s: %s)", type(exc).__name__, exc)
        return
    if stale:
        logger.warning("marked %d task run(s) of the dead attempt crashed: %s", len(stale),
                       ", ".join(t.name for t in stale))


def _process(
    specs: list[str],
    fetched: list[Any],
    out_dirs: list[str],
    root: Path,
    base: str,
    config: SegmentConfig,
    gpu_limit: str | None,
    dask_address: str | None,
    dask_cluster_kwargs: dict[str, Any] | None,
    remote: dict[str, Any] | None = None,
    bands_source: str | None = None,
) -> list[dict[str, Any]]:
    """Prepare and segment every image (local paths or fetch futures); one summary per image, with artifacts.

    ``specs`` name the images in summaries, logs and artifacts (credentials already hidden).
    """
    failures: dict[int, str] = {}
    if dask_address:
        wait([f for f in fetched if not isinstance(f, str)])
        local = []
        for i, f in enumerate(fetched):
            value = f if isinstance(f, str) else f.state.result(raise_on_failure=False)
            if not isinstance(value, str):
                failures[i] = failure_reason(specs[i], value)
            local.append(value if isinstance(value, str) else specs[i])
        runner = _dask_runner(dask_address, dask_cluster_kwargs)
        ok = [i for i in range(len(specs)) if i not in failures]
        prepared_list = prepare_stage.with_options(task_runner=runner)(
            [local[i] for i in ok], [out_dirs[i] for i in ok], config, str(root), [specs[i] for i in ok]
        )
        prepared: dict[int, Any] = {}
        for i, value in zip(ok, prepared_list, strict=True):
            if "error" in value:
                failures[i] = value["error"]
            else:
                prepared[i] = value
    else:
        prepared = {
            i: prepare_image.submit(f, d, config, str(root), specs[i])
            for i, (f, d) in enumerate(zip(fetched, out_dirs, strict=True))
        }
    segmented = {i: segment_image.submit(p, config, gpu_limit, specs[i], remote, bands_source, str(root))
                 for i, p in prepared.items()}
    try:
        wait(list(segmented.values()) + [p for p in prepared.values() if not isinstance(p, dict)])
    finally:
        PREDICTORS.release(current_run_id())

    summaries = []
    for i, spec in enumerate(specs):
        summary = collect_summary(i, spec, out_dirs[i], fetched[i], prepared.get(i), segmented.get(i), failures)
        summary["bands_source"] = bands_source  # a guess shows in the table artifact and the summary
        if summary["status"] == "failed":
            summary["links"] = {}
        elif remote:
            summary["links"] = remote_store.output_links(summary, redact(remote["root"]), base)
        else:
            summary["links"] = output_links(Path(summary["out_dir"]), root, base)
        summaries.append(summary)
        image_artifacts(summary)
    return summaries


def _remove_staged_copies(fetched: list[Any], staging: Path) -> None:
    """Remove the folder each of this run's fetches created, whatever became of its image.

    Only the paths the fetch tasks returned are removed (:func:`flows.inputs.remove_staged`), never
    a path read from a summary or a manifest.
    """
    futures = [f for f in fetched if not isinstance(f, str)]
    wait(futures)
    for future in futures:
        value = future.state.result(raise_on_failure=False) if future.state.is_completed() else None
        if isinstance(value, str):
            remove_staged(value, staging)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the segment flow once, in this process.")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config")
    parser.add_argument("--model")
    args = parser.parse_args()
    segment_flow(args.inputs, args.out, {"model": args.model} if args.model else None, args.config)
