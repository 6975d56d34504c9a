"""Checkpoints of a fine-tuning run: ``save_pretrained`` folders the segment pipeline loads.

A run's ``--out`` folder holds::

    best/   the epoch with the highest validation IoU (mean): SAM weights + samgeo_checkpoint.json
    last/   the latest epoch, the same, plus training_state.pt (what --resume needs)
    history.json, curves.png

``best`` and ``last`` are symlinks to hidden versioned folders, swapped atomically at each save
(:func:`save_checkpoint`): a crash at any moment leaves both complete.

``samgeo_checkpoint.json`` holds the training setup (every option), the data, the preprocessing
(composite, percentiles, band mapping: applied by ``segment --model`` automatically), the epoch
and its metrics, and the history so far. ``training_state.pt`` holds the optimizer, scheduler,
gradient-scaler and RNG states, so ``--resume`` continues exactly where the run stopped.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from samgeo_pipeline.errors import CheckpointError, ConfigError
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.io.atomic import fsync_path, replace_symlink
from samgeo_pipeline.sam.predictor import CHECKPOINT_META

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TRAINING_STATE = "training_state.pt"
FORMAT = "samgeo-pipeline fine-tuned SAM"
FORMAT_VERSION = 1


def _numpy_rng_globals() -> list[Any]:
    """What the NumPy RNG state (``np.random.get_state()``: a uint32 array) needs from the unpickler."""
    multiarray = getattr(np, "_core", None) or np.core  # NumPy 2 / 1
    return [multiarray.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def build_meta(
    config: FinetuneConfig,
    kind: str,
    epoch: int,
    history: list[dict[str, Any]],
    preprocessing: dict[str, Any],
    data: dict[str, Any],
) -> dict[str, Any]:
    """The ``samgeo_checkpoint.json`` of a checkpoint.

    Args:
        config: the run's options.
        kind: ``best`` or ``last``.
        epoch: the epoch (1-based) whose weights these are.
        history: per-epoch records up to now.
        preprocessing: composite, percentiles and (when explicit) bands; see
            :meth:`~samgeo_pipeline.config.SegmentConfig.with_checkpoint`.
        data: description and sizes of the training and validation data.
    """
    record = next((h for h in history if h["epoch"] == epoch), None)
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("samgeo-pipeline", "torch", "transformers", "accelerate"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "epoch": epoch,
        "base_model": config.model,
        "preprocessing": preprocessing,
        "prompts": {k: getattr(config, k) for k in ("prompt", "prompt_source", "points", "negatives", "erosion",
                                                     "box_jitter", "max_components", "point_merge")},
        "metrics": record,
        "data": data,
        "config": config.to_dict(),
        "history": history,
        "versions": versions,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip


def save_checkpoint(directory: Path, model: torch.nn.Module, meta: dict[str, Any], state: dict[str, Any] | None = None) -> Path:
    """Write ``model.save_pretrained`` + meta (+ training state) as a new version of ``directory``.

    ``directory`` (``last``, ``best``) is a symlink to a hidden versioned folder beside it
    (``.last.v-*``). Each save writes a new version, flushes it to disk, then repoints the link in
    one atomic step (:func:`~samgeo_pipeline.io.atomic.replace_symlink`), so ``directory`` is never
    missing and always a complete checkpoint; the previous version (and any a killed save left
    behind) is removed only after the swap.
    Everything that opens ``directory`` (``from_pretrained``, ``--resume``, ``segment --model``)
    follows the link. A real folder left by an older version is moved aside once, then linked.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    version = Path(tempfile.mkdtemp(prefix=f".{directory.name}.v-", dir=directory.parent))
    try:
        version.chmod(0o755)
        cast("PreTrainedModel", model).save_pretrained(version)
        (version / CHECKPOINT_META).write_text(json.dumps(meta, indent=2, default=_json_default))
        if state is not None:
            torch.save(state, version / TRAINING_STATE)
        for path in (*version.rglob("*"), version):
            fsync_path(path)
        _current_version(directory)  # a real folder of an older version is moved aside so the link can replace it
        replace_symlink(directory, version.name)
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise
    for stale in directory.parent.glob(f".{directory.name}.v-*"):  # the previous one, and any a killed save left
        if stale != version:
            shutil.rmtree(stale, ignore_errors=True)
    return directory


def _current_version(directory: Path) -> Path | None:
    """The folder ``directory`` links to now (to remove after the swap); a real folder (written by an
    older version of this package) is first moved to a versioned name so a link can replace it."""
    if directory.is_symlink():
        target = directory.parent / os.readlink(directory)
        return target if target.parent == directory.parent and target.name.startswith(f".{directory.name}.v-") else None
    if not directory.exists():
        return None
    legacy = Path(tempfile.mkdtemp(prefix=f".{directory.name}.v-", dir=directory.parent))
    os.replace(directory, legacy)  # legacy has just been created empty: the rename replaces it
    return legacy


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) global RNG states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def read_meta(directory: Path) -> dict[str, Any]:
    """The ``samgeo_checkpoint.json`` of a checkpoint folder.

    Raises:
        ConfigError: none there.
    """
    path = directory / CHECKPOINT_META
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
        return meta
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a fine-tuning checkpoint ({exc})") from None


def stored_config(out: Path) -> FinetuneConfig | None:
    """The options of the run in ``out`` (from ``last/``), or None when there is none."""
    if not (out / "last" / CHECKPOINT_META).is_file():
        return None
    values = read_meta(out / "last")["config"]
    return FinetuneConfig().merged(values)


def load_training_state(out: Path, config: FinetuneConfig) -> dict[str, Any]:
    """The training state to resume the run in ``out`` with ``config``.

    Raises:
        ConfigError: nothing to resume, or options that change the result differ from the run's
            (the message lists them; runtime options such as workers or the cache may differ).
    """
    last = out / "last"
    if not (last / TRAINING_STATE).is_file():
        raise ConfigError(f"--resume: {last / TRAINING_STATE} not found; start without --resume")
    previous = stored_config(out)
    assert previous is not None
    diff = config.differences(previous)
    if diff:
        listed = "; ".join(f"{k}: run {b!r}, now {a!r}" for k, (a, b) in sorted(diff.items()))
        raise ConfigError(f"--resume: options differ from the run in {out} ({listed}); pass the run's options")
    return load_state_file(last / TRAINING_STATE)


def load_state_file(path: Path) -> dict[str, Any]:
    """Load a ``training_state.pt`` without running code from it.

    ``torch.load(weights_only=True)`` builds tensors, containers and plain values only; the one
    extra allowed is what the NumPy RNG state needs (:func:`_numpy_rng_globals`). A pickle that
    names anything else (``os.system``, ...) is refused before it can run.

    Raises:
        CheckpointError: the file holds something else, or is corrupt; one line.
    """
    try:
        with torch.serialization.safe_globals(_numpy_rng_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError, TypeError) as exc:
        reason = _unsafe_reason(exc)
        raise CheckpointError(
            f"{path}: not a training state that can be loaded safely ({reason}); "
            "start a new run (another --out, without --resume) unless you wrote this file"
        ) from None
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "epoch", "rng"} <= state.keys():
        raise CheckpointError(f"{path}: not a training state of samgeo-pipeline; start a new run without --resume")
    return state


def _unsafe_reason(exc: BaseException) -> str:
    """The useful line of a torch.load error (weights-only errors name the refused global)."""
    import re

    text = str(exc)
    found = re.search(r"(Unsupported global: GLOBAL [^\s]+|got <[^>]+>|Unsupported operand[^\n]*)", text)
    if found:
        return found.group(1)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


__all__ = [
    "build_meta",
    "save_checkpoint",
    "rng_states",
    "restore_rng",
    "read_meta",
    "stored_config",
    "load_training_state",
    "load_state_file",
    "TRAINING_STATE",
]
