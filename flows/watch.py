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

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # Prefect loads this file by path; `flows.common` lives beside it
    sys.path.insert(0, _REPO)

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.deployments import run_deployment  # noqa: E402

from flows.common import GEOTIFF_SUFFIXES, RedactedLog, is_remote, local_path, url_path  # noqa: E402
from flows.stages import remote_errors  # noqa: E402
from samgeo_pipeline.io.atomic import write_bytes_atomic  # noqa: E402
from samgeo_pipeline.errors import ConfigError, InputError, SamgeoPipelineError, first_line  # noqa: E402
from samgeo_pipeline.redact import redact  # noqa: E402
from flows.watch_rules import DONE_SUFFIX, WatchRules, load_rules, options_for, read_meta  # noqa: E402

STATE_VERSION = 1
STATE_DIR = ".samgeo-watch"
#: The segment deployment started per file: ``FLOW_NAME/DEPLOYMENT_NAME`` (see deployments/prefect.yaml).
SEGMENT_DEPLOYMENT = "segment/segment"
#: A run ``Crashed`` this long (not rescheduled by the recovery automations) counts as failed.
CRASH_GRACE_SECONDS = 600.0
#: Statuses of a file version that no scan changes until the file changes.
_SETTLED = ("submitted", "done", "failed")


class WatchFlowError(SamgeoPipelineError):
    """Some segment runs could not be started; the files stay pending and are retried next scan."""


# --------------------------------------------------------------------------- plain functions


def list_rasters(root_url: str, suffixes: tuple[str, ...] = GEOTIFF_SUFFIXES) -> dict[str, dict[str, Any]]:
    """GeoTIFFs below ``root_url`` -> ``{"size": bytes, "mtime": str}``.

    Local roots give plain paths, remote ones full URLs (``s3://bucket/a.tif``). Names starting
    with a dot (temporary files of copy tools, the state folder) are skipped at any depth.

    Raises:
        InputError: the root does not exist.
    """
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(local_path(root_url))
    if not fs.isdir(root):
        raise InputError(f"{root_url}: watched folder does not exist (create it, or fix watch_url)")
    found: dict[str, dict[str, Any]] = {}
    for path, info in sorted(fs.find(root, detail=True).items()):
        rel = PurePosixPath(path).relative_to(PurePosixPath(root.rstrip("/") or "/"))
        if any(part.startswith(".") for part in rel.parts) or rel.suffix.lower() not in suffixes:
            continue
        key = fs.unstrip_protocol(path) if is_remote(root_url) else str(Path(path))
        found[key] = {"size": int(info.get("size") or 0), "mtime": _modified(info)}
    return found


def _modified(info: dict[str, Any]) -> str:
    """A modification stamp from an fsspec info dict (local, S3, GCS, Azure, memory)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "mtime_ns", "created", "ETag", "etag"):
        if info.get(key) is not None:
            return str(info[key])
    return ""


def plan_scan(
    known: dict[str, dict[str, Any]],
    listing: dict[str, dict[str, Any]],
    now: float,
    rules: WatchRules | None = None,
    has_marker: Callable[[str], bool] = lambda path: False,
) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """Compare a scan with the recorded files.

    Args:
        known: state entries by path: ``size``, ``mtime``, ``status`` (``pending``, ``retry``,
            ``submitted``, ``done``, ``failed``), ``last_change``, ``next_try``, ...
        listing: this scan's files (:func:`list_rasters`).
        now: time of the scan (seconds since the epoch).
        rules: when a file is ready (default :class:`WatchRules`: unchanged for 180 s).
        has_marker: whether ``PATH.done`` exists (``ready: done-file``).

    Returns:
        The new entries, the paths to submit now, and the paths that wait (new, changing, or
        waiting for their marker). Settled versions (submitted, done, failed) are left alone;
        files that disappeared are forgotten unless a run of theirs is in flight.
    """
    rules = rules or WatchRules()
    files = {p: e for p, e in known.items() if e.get("status") == "submitted"}
    ready, waiting = [], []
    for path, seen in listing.items():
        previous = known.get(path)
        same = previous is not None and (previous["size"], previous["mtime"]) == (seen["size"], seen["mtime"])
        entry = previous if same else {"size": seen["size"], "mtime": seen["mtime"], "status": "pending",
                                       "first_seen": previous.get("first_seen", now) if previous else now,
                                       "last_change": now}
        files[path] = entry
        if entry["status"] in _SETTLED:
            continue
        if _is_ready(entry, same, now, rules, lambda: has_marker(path)):
            ready.append(path)
        else:
            waiting.append(path)
    return files, ready, waiting


def _is_ready(entry: dict[str, Any], same: bool, now: float, rules: WatchRules, marker: Callable[[], bool]) -> bool:
    if entry["status"] == "retry":
        return now >= entry.get("next_try", 0)
    if rules.ready == "rename":
        return True
    if rules.ready == "done-file":
        return marker()
    return same and now - entry["last_change"] >= rules.stable_seconds


def record_outcome(entry: dict[str, Any], ok: bool, reason: str, now: float, rules: WatchRules) -> None:
    """Update a file's entry after its run ended (or the rules refused it): ``done``, or a failure
    that is retried after :meth:`WatchRules.retry_delay` until ``retries`` retries are spent."""
    entry.pop("flow_run_id", None)
    if ok:
        entry.update(status="done", reason=None)
        return
    failures = entry.get("failures", 0) + 1
    entry.update(failures=failures, reason=reason)
    if failures > rules.retries:
        entry.update(status="failed")
    else:
        entry.update(status="retry", next_try=now + rules.retry_delay(failures))


def run_outcome(state: dict[str, Any], now: float) -> tuple[bool, str] | None:
    """``(ok, reason)`` of a finished run from its state (``type``, ``message``, ``timestamp``), or
    None while it runs (a ``Crashed`` run counts once it stayed so for :data:`CRASH_GRACE_SECONDS`:
    the recovery automations reschedule it before)."""
    kind = state["type"]
    if kind == "COMPLETED":
        return True, ""
    if kind in ("FAILED", "CANCELLED") or (kind == "CRASHED" and now - state["timestamp"] >= CRASH_GRACE_SECONDS):
        return False, " ".join((state.get("message") or kind.lower()).split())[:400]
    return None


def failed_markdown(files: dict[str, dict[str, Any]], watch_url: str) -> str:
    """The ``watch-failed`` artifact: every file whose runs failed, with the reason and what comes next."""
    rows = sorted((p, e) for p, e in files.items() if e.get("failures"))
    lines = ["# samgeo-pipeline watch: failed files", "", f"Watched: `{watch_url}`.", ""]
    if not rows:
        return "\n".join(lines + ["No failed files."]) + "\n"
    lines += ["| file | failures | status | reason |", "| --- | ---: | --- | --- |"]
    for path, e in rows:
        status = "gave up" if e["status"] == "failed" else (
            f"retry at {time.strftime('%H:%M:%S', time.gmtime(e['next_try']))} UTC" if e["status"] == "retry"
            else e["status"])
        reason = str(e.get("reason") or "").replace("|", "\\|")
        lines.append(f"| `{path}` | {e['failures']} | {status} | {reason} |")
    return "\n".join(lines) + "\n"


def default_state_path(root_url: str) -> str:
    """``<root>/.samgeo-watch/state.json`` (a URL for a remote root)."""
    root = local_path(root_url)
    if is_remote(root):
        return f"{root.rstrip('/')}/{STATE_DIR}/state.json"
    return str(Path(root) / STATE_DIR / "state.json")


def load_state(path: str) -> dict[str, Any]:
    """The recorded state, or an empty one when the file does not exist yet."""
    try:
        if is_remote(path):
            from fsspec.core import url_to_fs

            fs, p = url_to_fs(path)
            text = fs.cat_file(p).decode() if fs.exists(p) else None
        else:
            file = Path(local_path(path))
            text = file.read_text() if file.exists() else None
        state = json.loads(text) if text else {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the watch state ({exc}); move it away to start afresh") from None
    state.setdefault("version", STATE_VERSION)
    state.setdefault("files", {})
    return state


def save_state(path: str, state: dict[str, Any]) -> None:
    """Write the state atomically (:func:`samgeo_pipeline.io.atomic.write_bytes_atomic`; one object put when remote)."""
    data = json.dumps(state, indent=1, sort_keys=True).encode()
    if is_remote(path):
        from fsspec.core import url_to_fs

        fs, p = url_to_fs(path)
        fs.makedirs(str(PurePosixPath(p).parent), exist_ok=True)
        fs.pipe_file(p, data)
        return
    write_bytes_atomic(Path(local_path(path)), data)


def idempotency_key(path: str, entry: dict[str, Any]) -> str:
    """One segment run per file version and attempt: path, size, modification stamp, attempt."""
    return f"samgeo-watch:{path}:{entry['size']}:{entry['mtime']}:{entry.get('failures', 0)}"


def relative_name(path: str, watch_url: str) -> str:
    """``path`` relative to the watched root, with ``/`` (what rule patterns match)."""
    root = str(url_path(watch_url)).rstrip("/")
    rel = str(url_path(path))
    return rel[len(root) + 1:] if rel.startswith(root + "/") else PurePosixPath(rel).name


def has_done_marker(path: str) -> bool:
    """Whether ``PATH.done`` exists (local or fsspec URL)."""
    from fsspec.core import url_to_fs

    fs, p = url_to_fs(local_path(path) + DONE_SUFFIX)
    return bool(fs.exists(p))


def file_options(path: str, rel: str, rules: WatchRules, base: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """Segment options of one file (:func:`flows.watch_rules.options_for` on its header;
    ``base``, the flow's ``options``, under the rules file's defaults).

    Raises:
        InputError: not a readable raster, its band mapping is refused, or a remote file that
            cannot be read (:func:`flows.stages.remote_errors`: the URL's credentials hidden).
    """
    from dataclasses import replace

    rules = replace(rules, defaults={**(base or {}), **rules.defaults})
    if is_remote(path):
        import fsspec

        with remote_errors(path), fsspec.open(path, "rb") as fh:
            meta = read_meta(fh)
    else:
        meta = read_meta(local_path(path))
    return options_for(rules, rel, meta)


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
