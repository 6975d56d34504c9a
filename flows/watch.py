"""Prefect flow ``watch``: scan a folder or fsspec URL on a schedule, start one segment run per new raster.

Each scan lists the GeoTIFFs below the watched root (hidden files and folders excluded) with their
size and modification time, and compares them with a JSON state file (default
``<root>/.samgeo-watch/state.json``, written atomically). The rules file
(:mod:`flows.watch_rules`, read at every scan) says when a file is ready: unchanged for
``stable_seconds`` (default 180 s; at least two scans), at once (``rename``: writers copy to a
dot-name, which is never listed, and rename when done), or once ``NAME.done`` exists
(``done-file``); and which segment options each file gets (band mapping from a rule, the file's
band descriptions, or a guess that is logged and refused when the descriptions contradict it).

Each scan also reads the state of the runs it started: a completed file is ``done``; a failed one
(or one the rules refused) is tried again after ``retry_backoff_seconds * 2**(n-1)``, up to
``retries`` times, then ``failed``. Every file that failed is listed, with its reason, in the
artifact ``watch-failed``. A file that changes is a new version and starts afresh. Submissions are
``run_deployment`` calls with an idempotency key of (path, size, mtime, attempt): a scan that dies
between submitting and saving its state cannot start a second run for the same attempt.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # Prefect loads this file by path; the other `flows` modules live beside it
    sys.path.insert(0, _REPO)

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import run_deployment

from flows.inputs import is_remote, local_path, url_path
from flows.watch_rules import WatchRules, load_rules
from flows.watch_state import (
    default_state_path,
    failed_markdown,
    file_options,
    has_done_marker,
    idempotency_key,
    list_rasters,
    load_state,
    plan_scan,
    record_outcome,
    relative_name,
    run_outcome,
    save_state,
)
from samgeo_pipeline.errors import ConfigError, InputError, SamgeoPipelineError, first_line
from samgeo_pipeline.redact import redact

#: The segment deployment started per file: ``FLOW_NAME/DEPLOYMENT_NAME`` (see deployments/prefect.yaml).
SEGMENT_DEPLOYMENT = "segment/segment"


class WatchFlowError(SamgeoPipelineError):
    """Some segment runs could not be started; the files stay pending and are retried next scan."""


# --------------------------------------------------------------------------- plain functions


class RedactedLog(logging.LoggerAdapter):
    """A run logger whose lines never show a URL's credentials: each message is formatted, then
    passed through :func:`samgeo_pipeline.redact.redact`."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter) -> None:
        super().__init__(logger, {})

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            self.logger.log(level, redact(str(msg) % args if args else str(msg)), **kwargs)


# --------------------------------------------------------------------------- tasks and flow


@task(name="scan-folder", retries=2, retry_delay_seconds=5)
def scan_folder(root_url: str) -> dict[str, dict[str, Any]]:
    """Task wrapper of :func:`list_rasters`."""
    return list_rasters(root_url)


@task(name="read-run-states", retries=2, retry_delay_seconds=5)
def read_run_states(run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Flow run id -> ``{"type", "message", "timestamp"}`` of its current state (missing runs left out)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    if not run_ids:
        return {}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(run_ids))))
    return {str(r.id): {"type": r.state.type.value, "message": r.state.message or "",
                        "timestamp": r.state.timestamp.timestamp()} for r in runs if r.state is not None}


@task(name="start-segment-run", retries=2, retry_delay_seconds=5)
def start_segment_run(deployment: str, parameters: dict[str, Any], key: str, run_name: str) -> str:
    """Create a flow run of ``deployment`` (without waiting for it); returns its id."""
    run = run_deployment(deployment, parameters=parameters, timeout=0, idempotency_key=key, flow_run_name=run_name)
    return str(run.id)


@flow(name="watch", log_prints=True)
def watch_flow(
    watch_url: str,
    output_root: str,
    deployment: str = SEGMENT_DEPLOYMENT,
    options: dict[str, Any] | None = None,
    config_path: str | None = None,
    output_base_url: str | None = None,
    state_path: str | None = None,
    rules_path: str | None = None,
    output_storage_options: dict[str, Any] | None = None,
    output_credentials_block: str | None = None,
) -> dict[str, Any]:
    """Scan ``watch_url`` once: record the outcome of the runs it started, then start a
    ``deployment`` run for each file that is ready (new, changed, or due for a retry).

    Args:
        watch_url: folder or fsspec URL (``s3://bucket/incoming``; needs its filesystem package).
        output_root: ``output_root`` of the segment runs (outputs keep the sub-folders of the watched root).
        deployment: the segment deployment, ``FLOW/DEPLOYMENT``.
        options: segment options of every file, under the rules file's defaults and rules.
        config_path, output_base_url, output_storage_options, output_credentials_block: passed to
            each segment run when given (``output_root`` may be an fsspec URL, see :mod:`flows.remote`).
        state_path: the JSON state file (default ``<watch_url>/.samgeo-watch/state.json``).
        rules_path: the rules file (:mod:`flows.watch_rules`); missing: the defaults.

    Returns:
        ``{"submitted": {path: flow_run_id}, "waiting": [paths], "failed": {path: reason}, "known": n}``
        (``failed``: files that failed in this scan, retried later or given up).

    Raises:
        WatchFlowError: a segment run could not be started (the file is retried next scan).
        ConfigError: the rules file is broken (nothing is started until it is fixed).
    """
    logger = RedactedLog(get_run_logger())  # paths are URLs that may hold credentials
    if not is_remote(watch_url):
        watch_url = str(Path(local_path(watch_url)).expanduser().resolve())
        if not Path(watch_url).exists():
            Path(watch_url).mkdir(parents=True)
            logger.warning("created the watched folder %s (it did not exist)", watch_url)
    rules = load_rules(rules_path)
    state_file = state_path or default_state_path(watch_url)
    listing = scan_folder(watch_url)
    state = load_state(state_file)
    failed = _record_runs(state["files"], rules, logger)
    files, ready, waiting = plan_scan(state["files"], listing, time.time(), rules, has_done_marker)
    state["files"] = files
    save_state(state_file, state)
    for path in waiting:
        logger.info("%s: %s; waiting", path, "retry later" if files[path]["status"] == "retry" else
                    f"new, changing or unmarked ({rules.ready})")
    extra = {"config_path": config_path, "output_base_url": output_base_url,
             "output_storage_options": output_storage_options, "output_credentials_block": output_credentials_block}
    submitted, errors = {}, []
    for path in ready:
        outcome = _submit(path, files[path], watch_url, output_root, deployment, rules, options, extra, logger)
        if outcome.startswith("error:"):
            errors.append(outcome[len("error:"):])
        elif outcome.startswith("refused:"):
            failed[path] = outcome[len("refused:"):]
        else:
            submitted[path] = outcome
        save_state(state_file, state)  # one at a time: a crash loses no submission
    _artifacts(watch_url, state_file, files, submitted, waiting, errors)
    if errors:
        raise WatchFlowError(redact(f"{len(errors)} segment run(s) could not be started:\n" + "\n".join(errors)))
    return {"submitted": submitted, "waiting": waiting, "failed": failed, "known": len(files)}


def _record_runs(files: dict[str, dict[str, Any]], rules: WatchRules, logger) -> dict[str, str]:
    """Mark each submitted file whose run ended done or failed; returns the failed ones' reasons."""
    ids = {e["flow_run_id"]: p for p, e in files.items() if e.get("status") == "submitted" and e.get("flow_run_id")}
    states = read_run_states(list(ids))
    now, failed = time.time(), {}
    for run_id, path in ids.items():
        outcome = run_outcome(states[run_id], now) if run_id in states else None
        if outcome is None:
            continue
        record_outcome(files[path], outcome[0], outcome[1], now, rules)
        if not outcome[0]:
            failed[path] = outcome[1]
            logger.warning("%s: run %s failed (%s); %s", path, run_id, outcome[1], _next_step(files[path]))
    return failed


def _next_step(entry: dict[str, Any]) -> str:
    if entry["status"] == "failed":
        return f"gave up after {entry['failures']} failure(s); listed in the artifact watch-failed"
    return f"retry in {max(entry['next_try'] - time.time(), 0):.0f} s"


def _submit(path, entry, watch_url, output_root, deployment, rules, options, extra, logger) -> str:
    """Start one file's segment run; returns the run id, ``refused:REASON`` or ``error:REASON``."""
    try:
        opts, bands_source = file_options(path, relative_name(path, watch_url), rules, options)
    except (InputError, ConfigError) as exc:
        record_outcome(entry, False, first_line(exc), time.time(), rules)
        logger.warning("%s: refused (%s); %s", path, exc, _next_step(entry))
        return f"refused:{exc}"
    if bands_source.startswith("guessed"):
        logger.warning("%s: band mapping %s %s (no rule gives one, no band descriptions name the bands); "
                       "add a watch rule if it is wrong", path, opts["bands"], bands_source)
    parameters = {"inputs": [path], "output_root": output_root, "relative_to": watch_url, "options": opts,
                  "bands_source": bands_source, **{k: v for k, v in extra.items() if v is not None}}
    run_name = f"segment-{url_path(path).name}"
    state_run = start_segment_run(deployment, parameters, idempotency_key(path, entry), run_name, return_state=True)
    if not state_run.is_completed():
        return f"error:{path}: {state_run.message or 'could not start a segment run'}"
    run_id = state_run.result()
    entry.update(status="submitted", flow_run_id=run_id, submitted_at=time.time(), bands_source=bands_source)
    logger.info("%s: started segment run %s (bands %s: %s)", path, run_id, opts["bands"], bands_source)
    return run_id


def _guess_note(entry: dict[str, Any]) -> str:
    """`` (band order guessed ...: add a watch rule)`` for a file whose band mapping was guessed, else empty."""
    how = str(entry.get("bands_source") or "")
    return f" (**band order {how}**: pin it with a watch rule)" if how.startswith("guessed") else ""


def _artifacts(watch_url, state_file, files, submitted, waiting, errors) -> None:
    """The markdown of this scan (``watch-scan``) and the list of failed files (``watch-failed``),
    credentials of URLs hidden."""
    if submitted or waiting or errors:
        lines = ["# samgeo-pipeline watch", "", f"Watched: `{watch_url}`; state: `{state_file}`.", ""]
        lines += [f"- started `{url_path(p).name}`: flow run `{r}`{_guess_note(files[p])}" for p, r in submitted.items()]
        lines += [f"- waiting for `{url_path(p).name}`" for p in waiting]
        lines += [f"- **not started** {e}" for e in errors]
        create_markdown_artifact(redact("\n".join(lines) + "\n"), key="watch-scan",
                                 description="last scan of the watch flow")
    create_markdown_artifact(redact(failed_markdown(files, watch_url)), key="watch-failed",
                             description="files whose segment runs failed, with the reasons")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run one scan of the watch flow in this process.")
    parser.add_argument("watch_url")
    parser.add_argument("--out", required=True)
    parser.add_argument("--deployment", default=SEGMENT_DEPLOYMENT)
    parser.add_argument("--rules")
    args = parser.parse_args()
    print(watch_flow(args.watch_url, args.out, args.deployment, rules_path=args.rules))
