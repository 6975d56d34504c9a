"""What a segment run reports, per image and per run: summaries gathered from the task futures,
the Prefect artifacts (a table row and output links per image, the run's markdown summary, their
keys), the root's STAC catalog, where the run ran (the manifest's ``runtime``) and the storage
options of a remote output root.

Plain functions called by :mod:`flows.segment` from inside its flow (some use Prefect's run
context and artifact API; no tasks of their own).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.runtime import flow_run as runtime_flow_run

from flows import remote as remote_store
from flows.inputs import remote_errors, url_path
from flows.links import how_to_open
from samgeo_pipeline.errors import ConfigError, SamgeoPipelineError, first_line
from samgeo_pipeline.outputs.stac_catalog import rebuild_remote_catalog, register_item
from samgeo_pipeline.redact import redact


def current_run_id() -> str:
    return str(runtime_flow_run.id or "local")


def update_catalog(out_dir: Path, root: str | None, remote_dir: str | None, remote: dict[str, Any] | None, logger) -> None:
    """List the finished image in its root's STAC catalog: ``register_item`` under the catalog's lock
    on a local root, :func:`~samgeo_pipeline.outputs.stac_catalog.rebuild_remote_catalog` on a store. A catalog that
    cannot be written is a warning: the image is finished all the same."""
    try:
        if remote_dir and remote:
            with remote_errors(remote["root"]):
                fs, path = remote_store.remote_fs(remote["root"], remote["storage_options"])
                rebuild_remote_catalog(fs, path)
        elif root is not None:
            register_item(Path(root), out_dir)
    except (SamgeoPipelineError, OSError, ValueError) as exc:
        logger.warning("%s: catalog.json not updated (%s)", redact(remote["root"] if remote else str(root)), exc)


def remote_dir_of(out_dir: Path, remote: dict[str, Any] | None) -> str | None:
    """The store URL of a local output folder (None for a local output root)."""
    if not remote:
        return None
    return remote_store.join(remote["root"], out_dir.relative_to(remote["local_root"]).as_posix())


def publish(summary: dict[str, Any], remote_dir: str | None) -> dict[str, Any]:
    """``summary``, naming the store's URLs (credentials hidden) when the outputs were uploaded."""
    return remote_store.remote_summary(summary, redact(remote_dir)) if remote_dir else summary


def failure_reason(path: str, exc: Any) -> str:
    text = first_line(exc)
    if isinstance(exc, SamgeoPipelineError):
        return text
    return f"{path}: {type(exc).__name__}: {text}" if path not in text else text


def storage_options(options: dict[str, Any] | None, credentials_block: str | None) -> dict[str, Any]:
    """``options`` with the fsspec options of the ``Secret`` block ``credentials_block`` on top.

    Raises:
        ConfigError: no Secret block of that name, or it does not hold a JSON object.
    """
    if not credentials_block:
        return dict(options or {})
    from prefect.blocks.system import Secret

    fix = (f"create it with Secret(value={{\"key\": ..., \"secret\": ...}}).save({credentials_block!r}) "
           "(prefect.blocks.system), or leave output_credentials_block out to use the worker's AWS_* environment")
    try:
        secret = Secret.load(credentials_block).get()
    except ValueError:
        raise ConfigError(f"output_credentials_block {credentials_block!r}: no such Secret block; {fix}") from None
    if not isinstance(secret, dict):
        raise ConfigError(f"output_credentials_block {credentials_block!r}: holds no JSON object of storage "
                          f"options; {fix}")
    return {**(options or {}), **secret}


def warn_uncertain(summaries: list[dict[str, Any]], logger) -> None:
    """One warning naming the images the coarse rule abstained on, with their reasons (the run still completes)."""
    uncertain = [s for s in summaries if s.get("uncertain")]
    if uncertain:
        reasons = "\n".join(f"- {s['input']}: {s['uncertain']}" for s in uncertain)
        logger.warning("%d of %d image(s) uncertain (the coarse rule cannot tell water from land; no mask unless "
                       "on_uncertain: write; map NIR/SWIR with bands or pass a threshold):\n%s",
                       len(uncertain), len(summaries), reasons)  # fmt: skip


def worker_runtime() -> dict[str, Any]:
    """Where this run ran: host, process, GPU (``CUDA_VISIBLE_DEVICES``), worker and flow run."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            **runner_runtime()}


def runner_runtime() -> dict[str, Any]:
    """The Prefect worker that started this flow process (its name, from the worker's
    ``PREFECT__WORKER_NAME``; None when run in-process) and the flow run: the manifest's ``runtime``."""
    return {"worker": os.environ.get("PREFECT__WORKER_NAME"), "flow_run": current_run_id()}


def collect_summary(
    i: int, spec: str, out_dir: str, fetched: Any, prepared: Any, segmented: Any, failures: dict[int, str]
) -> dict[str, Any]:
    """One image's summary from its futures, or a failed summary with the first stage's reason (a
    failed fetch's own reason, not the "upstream failed" of the stages after it)."""
    failed = {"input": spec, "out_dir": out_dir, "status": "failed", "error": failures.get(i)}
    if i in failures:
        return failed
    if not isinstance(fetched, str) and not fetched.state.is_completed():
        failed["error"] = failure_reason(spec, fetched.state.result(raise_on_failure=False))
        return failed
    if prepared is not None and not isinstance(prepared, dict) and not prepared.state.is_completed():
        failed["error"] = failure_reason(spec, prepared.state.result(raise_on_failure=False))
        return failed
    state = segmented.state
    if not state.is_completed():
        failed["error"] = failure_reason(spec, state.result(raise_on_failure=False))
        return failed
    summary = dict(state.result())
    summary["input"] = spec  # this run's input (a reused or cached result may name another run's)
    if state.name == "Cached":
        summary["status"] = "cached"
    return summary


def image_artifacts(summary: dict[str, Any]) -> None:
    """A table and one link per output for one image (nothing but the table for a failed one)."""
    name = url_path(summary["input"]).name  # a URL: its file name, without the query
    row = image_row(summary)  # the coarse rule's reason when it abstained (``uncertain``)
    if summary.get("error"):
        row["error"] = summary["error"]
    uncertain = ", uncertain" if summary.get("uncertain") and summary["status"] != "uncertain" else ""
    guessed = f", band order {summary['bands_source']}" if "bands" in row else ""
    create_table_artifact([row], key=artifact_key("segment", Path(name).stem),
                          description=f"{name}: {summary['status']}{uncertain}{guessed}")
    for output, url in (summary.get("links") or {}).items():
        create_link_artifact(url, link_text=f"{name}: {output}", description=f"{output} of {name}")


def artifact_key(prefix: str, name: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) from a file name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "image"
    return f"{prefix}-{slug}"[:100]


def image_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The artifact table row of one image's summary (see :func:`flows.segment_steps.summarize`); ``uncertain``:
    the coarse rule's reason when it abstained on the image."""
    tiles = summary.get("tiles") or {}
    area = summary.get("water_area_m2")
    seconds = summary.get("seconds")
    return {
        "image": url_path(summary["input"]).name,
        "status": summary["status"],
        "water area km²": round(area / 1e6, 4) if area is not None else None,
        "polygons": summary.get("polygons"),
        "tiles processed": (tiles.get("sam", 0) + tiles.get("coarse_only", 0)) if tiles else None,
        "tiles skipped": tiles.get("skipped") if tiles else None,
        "tiles failed": tiles.get("failed") if tiles else None,
        "seconds": round(seconds, 1) if seconds is not None else None,
        **({"uncertain": summary["uncertain"]} if summary.get("uncertain") else {}),
        **({"bands": summary["bands_source"]} if guessed_bands(summary) else {}),
    }


def guessed_bands(summary: dict[str, Any]) -> bool:
    """Whether the image's band mapping was guessed from its band count (the watch flow's ``bands_source``)."""
    return str(summary.get("bands_source") or "").startswith("guessed")


def run_markdown(summaries: Sequence[dict[str, Any]], root: Path, base: str) -> str:
    """The markdown summary of one segment run: a row per image with links, then the failures and the
    images the coarse rule abstained on (``uncertain``)."""
    uncertain = [s for s in summaries if s.get("uncertain")]
    done = sum(s["status"] in ("done", "skipped", "cached") and not s.get("uncertain") for s in summaries)
    also = f", {len(uncertain)} uncertain" if uncertain else ""
    lines = [
        "# samgeo-pipeline segment",
        "",
        f"{done} of {len(summaries)} image(s) done{also}; outputs in `{root}`, links under <{base}> "
        f"({how_to_open(str(root))}); STAC catalog: <{base}catalog.json>.",
        "",
        "| image | status | water km² | polygons | tiles processed/skipped/failed | seconds | outputs |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for s in summaries:
        row = image_row(s)
        links = " ".join(f"[{name}]({url})" for name, url in (s.get("links") or {}).items())
        tiles = (
            f"{row['tiles processed']}/{row['tiles skipped']}/{row['tiles failed']}"
            if row["tiles processed"] is not None else "-"
        )
        lines.append(
            f"| {row['image']} | {row['status']} | {_fmt(row['water area km²'])} | {_fmt(row['polygons'])} | "
            f"{tiles} | {_fmt(row['seconds'])} | {links or '-'} |"
        )
    failures = [s for s in summaries if s.get("error")]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- `{url_path(s['input']).name}`: {s['error']}" for s in failures]
    if uncertain:
        lines += ["", "## Uncertain: the coarse rule cannot tell water from land", "",
                  "No SAM and no mask for these unless `on_uncertain: write`. Map NIR/SWIR (`bands`), pass a "
                  "`threshold`, or set `on_uncertain: write`; see each image's quicklook.png and manifest.json.", ""]
        lines += [f"- `{url_path(s['input']).name}` ({s['status']}): {s['uncertain']}" for s in uncertain]
    guessed = [s for s in summaries if guessed_bands(s)]
    if guessed:
        lines += ["", "## Band order guessed", "",
                  "No watch rule, no `bands` option and no band descriptions gave these images' band order: it was "
                  "guessed from the band count, and a wrong guess gives wrong water without any error. Pin it with "
                  "a watch rule (`options: {bands: ...}`, see flows/watch_rules.example.yaml) or the `bands` option.", ""]
        lines += [f"- `{url_path(s['input']).name}`: {s['bands_source']}" for s in guessed]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)
