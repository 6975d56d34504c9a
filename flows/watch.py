"""Prefect flow ``watch``: scan a folder or fsspec URL on a schedule, start one segment run per new raster.

Each scan lists the GeoTIFFs below the watched root (hidden files and folders excluded) with their
size and modification time, and compares them with a JSON state file (default
``<root>/.samgeo-watch/state.json``, written atomically). A file is submitted when it is seen
unchanged in two consecutive scans, so a file still being written waits; a file that changes
after it was submitted is submitted again once stable. Submissions are ``run_deployment`` calls
of the segment deployment with an idempotency key of (path, size, mtime): even a scan that dies
between submitting and saving its state cannot start a second run for the same file version.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # Prefect loads this file by path; `flows.common` lives beside it
    sys.path.insert(0, _REPO)

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.deployments import run_deployment  # noqa: E402

from flows.common import GEOTIFF_SUFFIXES, is_remote, local_path  # noqa: E402
from samgeo_pipeline.errors import InputError, SamgeoPipelineError  # noqa: E402

STATE_VERSION = 1
STATE_DIR = ".samgeo-watch"
#: The segment deployment started per file: ``FLOW_NAME/DEPLOYMENT_NAME`` (see deployments/prefect.yaml).
SEGMENT_DEPLOYMENT = "segment/segment"


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
    known: dict[str, dict[str, Any]], listing: dict[str, dict[str, Any]], now: float
) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """Compare a scan with the recorded files.

    Args:
        known: state entries by path: ``size``, ``mtime``, ``status`` (``pending`` or
            ``submitted``), ``first_seen``, ...
        listing: this scan's files (:func:`list_rasters`).
        now: time of the scan (seconds since the epoch).

    Returns:
        The new entries, the paths to submit now (pending and unchanged since the last scan), and
        the paths that wait (new or still changing). Submitted files unchanged are left alone;
        pending files that disappeared are forgotten.
    """
    files: dict[str, dict[str, Any]] = {p: e for p, e in known.items() if e.get("status") == "submitted"}
    ready, waiting = [], []
    for path, seen in listing.items():
        previous = known.get(path)
        same = previous is not None and previous["size"] == seen["size"] and previous["mtime"] == seen["mtime"]
        if same and previous["status"] == "submitted":
            continue
        if same and previous["status"] == "pending":
            files[path] = previous
            ready.append(path)
            continue
        files[path] = {
            "size": seen["size"],
            "mtime": seen["mtime"],
            "status": "pending",
            "first_seen": previous.get("first_seen", now) if previous else now,
            "last_change": now,
        }
        waiting.append(path)
    return files, ready, waiting


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
    """Write the state atomically: a temporary file renamed over the old one (one object put when remote)."""
    data = json.dumps(state, indent=1, sort_keys=True).encode()
    if is_remote(path):
        from fsspec.core import url_to_fs

        fs, p = url_to_fs(path)
        fs.makedirs(str(PurePosixPath(p).parent), exist_ok=True)
        fs.pipe_file(p, data)
        return
    file = Path(local_path(path))
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def idempotency_key(path: str, entry: dict[str, Any]) -> str:
    """One segment run per file version: path, size and modification stamp."""
    return f"samgeo-watch:{path}:{entry['size']}:{entry['mtime']}"


# --------------------------------------------------------------------------- tasks and flow


@task(name="scan-folder", retries=2, retry_delay_seconds=5)
def scan_folder(root_url: str) -> dict[str, dict[str, Any]]:
    """Task wrapper of :func:`list_rasters`."""
    return list_rasters(root_url)


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
) -> dict[str, Any]:
    """Scan ``watch_url`` once; start a ``deployment`` run for each new or changed GeoTIFF that is stable.

    Args:
        watch_url: folder or fsspec URL (``s3://bucket/incoming``; needs its filesystem package).
        output_root: ``output_root`` of the segment runs (outputs keep the sub-folders of the watched root).
        deployment: the segment deployment, ``FLOW/DEPLOYMENT``.
        options, config_path, output_base_url: passed to each segment run when given (else the
            deployment's defaults apply).
        state_path: the JSON state file (default ``<watch_url>/.samgeo-watch/state.json``).

    Returns:
        ``{"submitted": {path: flow_run_id}, "waiting": [paths], "known": n}``.

    Raises:
        WatchFlowError: a segment run could not be started (the file is retried next scan).
    """
    logger = get_run_logger()
    if not is_remote(watch_url):
        watch_url = str(Path(local_path(watch_url)).expanduser().resolve())
        if not Path(watch_url).exists():
            Path(watch_url).mkdir(parents=True)
            logger.warning("created the watched folder %s (it did not exist)", watch_url)
    state_file = state_path or default_state_path(watch_url)
    listing = scan_folder(watch_url)
    state = load_state(state_file)
    files, ready, waiting = plan_scan(state["files"], listing, time.time())
    state["files"] = files
    save_state(state_file, state)
    for path in waiting:
        logger.info("%s: new or still changing (%d bytes); waiting for a stable scan", path, files[path]["size"])
    extra = {"options": options, "config_path": config_path, "output_base_url": output_base_url}
    submitted: dict[str, str] = {}
    errors: list[str] = []
    for path in ready:
        parameters = {"inputs": [path], "output_root": output_root, "relative_to": watch_url,
                      **{k: v for k, v in extra.items() if v is not None}}
        entry = files[path]
        run_name = f"segment-{PurePosixPath(path).name}"
        state_run = start_segment_run(deployment, parameters, idempotency_key(path, entry), run_name,
                                      return_state=True)
        if not state_run.is_completed():
            errors.append(f"{path}: {state_run.message or 'could not start a segment run'}")
            continue
        run_id = state_run.result()
        entry.update(status="submitted", flow_run_id=run_id, submitted_at=time.time())
        save_state(state_file, state)  # one at a time: a crash loses no submission
        submitted[path] = run_id
        logger.info("%s: started segment run %s", path, run_id)
    if submitted or waiting or errors:
        lines = ["# samgeo-pipeline watch", "", f"Watched: `{watch_url}`; state: `{state_file}`.", ""]
        lines += [f"- started `{Path(p).name}`: flow run `{r}`" for p, r in submitted.items()]
        lines += [f"- waiting for `{Path(p).name}` (new or still changing)" for p in waiting]
        lines += [f"- **not started** {e}" for e in errors]
        create_markdown_artifact("\n".join(lines) + "\n", key="watch-scan", description="last scan of the watch flow")
    if errors:
        raise WatchFlowError(f"{len(errors)} segment run(s) could not be started:\n" + "\n".join(errors))
    return {"submitted": submitted, "waiting": waiting, "known": len(files)}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run one scan of the watch flow in this process.")
    parser.add_argument("watch_url")
    parser.add_argument("--out", required=True)
    parser.add_argument("--deployment", default=SEGMENT_DEPLOYMENT)
    args = parser.parse_args()
    print(watch_flow(args.watch_url, args.out, args.deployment))
