"""Prefect flow ``finetune``: fine-tune SAM's mask decoder on the GPU worker, with curves and checkpoint links.

A thin wrapper of :func:`samgeo_pipeline.finetune.finetune`: options as a dict and/or a YAML file
(the names of ``samgeo-pipeline finetune``), one task that holds a slot of the global concurrency
limit ``gpu`` while it trains, and artifacts: a table of the epochs (losses, validation IoU/F1,
seconds) and links to the best and last checkpoints and the curves PNG. ``resume: true`` continues
an interrupted run from its folder (use it as the deployment's retry after a worker restart).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # Prefect loads this file by path; the other `flows` modules live beside it
    sys.path.insert(0, _REPO)

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.concurrency.sync import concurrency

from flows.gpu_slots import GPU_LEASE_SECONDS, ensure_concurrency_limit
from flows.links import base_url
from samgeo_pipeline.finetune.config import FinetuneConfig, load_finetune_file


def build_finetune_config(
    options: dict[str, Any] | None = None, config_path: str | None = None, default_out: str | None = None
) -> FinetuneConfig:
    """Defaults (or the stored run's options when resuming) < YAML file < ``options``; no progress bars.

    ``default_out`` replaces the default ``out`` when neither the file nor ``options`` set one.
    """
    from samgeo_pipeline.finetune.checkpoint import stored_config

    from_file = load_finetune_file(config_path) if config_path else {}
    options = dict(options or {})
    if default_out and "out" not in options and "out" not in from_file:
        options["out"] = default_out
    base = FinetuneConfig()
    if options.get("resume") or from_file.get("resume"):
        out = options.get("out") or from_file.get("out") or base.out
        base = stored_config(Path(out)) or base
    return base.merged(from_file).merged(options).merged({"progress": False})


def history_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One artifact-table row per epoch."""
    rows = []
    for record in history:
        val = record.get("val") or {}
        rows.append({
            "epoch": record.get("epoch"),
            "train loss": _round(record.get("train_loss")),
            "val loss": _round(record.get("val_loss")),
            "val IoU mean": _round(val.get("iou_mean")),
            "val F1 mean": _round(val.get("f1_mean")),
            "lr": record.get("lr"),
            "seconds": _round(record.get("seconds"), 1),
        })
    return rows


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def result_links(paths: dict[str, Path | None], output_root: Path | None, base: str) -> dict[str, str]:
    """Name -> http(s) URL for the result paths that lie below ``output_root`` (none without one)."""
    links = {}
    if output_root is None:
        return links
    root = output_root.resolve()
    for name, path in paths.items():
        if path is None or not Path(path).exists():
            continue
        resolved = Path(path).resolve()
        if resolved == root or root in resolved.parents:
            suffix = "/" if resolved.is_dir() else ""
            links[name] = base + resolved.relative_to(root).as_posix() + suffix
    return links


@task(name="finetune-sam")
def train(config: FinetuneConfig, gpu_limit: str | None = None) -> dict[str, Any]:
    """Run the fine-tuning (holding a ``gpu_limit`` slot); returns paths, history and timings (no model)."""
    from samgeo_pipeline.finetune import finetune

    logger = get_run_logger()
    if gpu_limit:
        with concurrency(gpu_limit, occupy=1, lease_duration=GPU_LEASE_SECONDS):  # free 60 s after a crash
            result = finetune(config, log=logger.info)
    else:
        result = finetune(config, log=logger.info)
    return {
        "out_dir": str(result.out_dir),
        "best_dir": str(result.best_dir) if result.best_dir else None,
        "last_dir": str(result.last_dir),
        "curves": str(result.curves) if result.curves else None,
        "best_epoch": result.best_epoch,
        "completed": result.completed,
        "history": result.history,
        "seconds": result.seconds,
        "counts": result.counts,
    }


@flow(name="finetune", log_prints=True)
def finetune_flow(
    options: dict[str, Any] | None = None,
    config_path: str | None = None,
    output_root: str | None = None,
    output_base_url: str | None = None,
    gpu_limit: str | None = None,
) -> dict[str, Any]:
    """Fine-tune SAM as ``options`` / ``config_path`` say (``data``, ``out``, ``epochs``, ``model``, ...).

    Args:
        options: finetune options by name (as the ``samgeo-pipeline finetune`` flags with ``_``).
        config_path: YAML file of options.
        output_root: a folder served by ``samgeo-pipeline serve``; ``out`` defaults to
            ``output_root/finetune``, and results below ``output_root`` are linked from the
            artifacts under ``output_base_url``.
        output_base_url: start of the links (default ``$SAMGEO_OUTPUT_BASE_URL`` or
            ``http://127.0.0.1:8000/``).
        gpu_limit: a global concurrency limit to hold while training (default none: the worker's
            ``--limit 1`` keeps one job per GPU).

    Returns:
        The checkpoint folders, curves, per-epoch history, timings and sample counts.
    """
    logger = get_run_logger()
    config = build_finetune_config(options, config_path, str(Path(output_root) / "finetune") if output_root else None)
    if gpu_limit and not ensure_concurrency_limit(gpu_limit, 1, logger):
        gpu_limit = None
    summary = train(config, gpu_limit)
    rows = history_rows(summary["history"])
    if rows:
        create_table_artifact(rows, key="finetune-history", description=f"fine-tuning of {config.model} -> {config.out}")
    paths = {"best checkpoint": summary["best_dir"], "last checkpoint": summary["last_dir"], "curves": summary["curves"]}
    links = result_links({k: Path(v) if v else None for k, v in paths.items()},
                         Path(output_root) if output_root else None, base_url(output_base_url))
    for name, url in links.items():
        create_link_artifact(url, link_text=name, description=f"{name} of {config.out}")
    lines = [
        "# samgeo-pipeline finetune", "",
        f"Model `{config.model}`, data `{config.data}`; best epoch {summary['best_epoch']} "
        f"({'completed' if summary['completed'] else 'stopped early'}).", "",
    ]
    lines += [f"- {name}: " + (f"[{paths[name]}]({links[name]})" if name in links else f"`{paths[name]}`")
              for name in paths if paths[name]]
    create_markdown_artifact("\n".join(lines) + "\n", key="finetune-summary", description="fine-tuning run")
    return summary
