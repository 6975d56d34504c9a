"""The watch flow's plain functions (no Prefect): list the watched rasters, keep the state file of
what each file version became, and plan a scan (which files are ready, which runs ended).

The state file is JSON (``<root>/.samgeo-watch/state.json`` by default), written atomically; see
:mod:`flows.watch` for the lifecycle of a file (pending, submitted, done, failed, retried).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from flows.inputs import GEOTIFF_SUFFIXES, is_remote, local_path, remote_errors, url_path
from flows.watch_rules import DONE_SUFFIX, WatchRules, options_for, read_meta
from samgeo_pipeline.errors import InputError
from samgeo_pipeline.io.atomic import write_bytes_atomic

STATE_VERSION = 1
STATE_DIR = ".samgeo-watch"


#: A run ``Crashed`` this long (not rescheduled by the recovery automations) counts as failed.
CRASH_GRACE_SECONDS = 600.0
#: Statuses of a file version that no scan changes until the file changes.
_SETTLED = ("submitted", "done", "failed")


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
        if _is_ready(entry, same, now, rules, partial(has_marker, path)):
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
            cannot be read (:func:`flows.inputs.remote_errors`: the URL's credentials hidden).
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
