"""SAM on batches of prepared tiles: only running out of memory is retried.

A batch that runs out of memory (GPU or CPU) is split in halves, down to single tiles; a tile that
runs out of memory alone is written as nodata and listed with its reason (the image ends
``partial``). Any other error is a bug or a broken model: it fails the image, naming the tile(s).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from samgeo_pipeline.errors import SamInferenceError, first_line
from samgeo_pipeline.models.base import Predictor
from samgeo_pipeline.models.sam3 import TextOptions
from samgeo_pipeline.run.prepare import PreparedTile
from samgeo_pipeline.run.sink import TileSink
from samgeo_pipeline.run.text_prompts import text_water

#: Parts of the messages of torch's out-of-memory ``RuntimeError`` s that are not
#: ``torch.OutOfMemoryError``: the CPU allocator ("DefaultCPUAllocator: can't allocate memory: you
#: tried to allocate N bytes"), CUDA kernels and libraries ("CUDA error: out of memory").
_OOM_MESSAGES = ("can't allocate memory", "not enough memory", "out of memory", "CUBLAS_STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device or host ran out of memory."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MESSAGES)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (:func:`~samgeo_pipeline.errors.first_line`)."""
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


class InferenceOptions(TextOptions, Protocol):
    """What :func:`run_sam_batch` reads, text prompts included; :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    # Read-only properties: the configs are frozen dataclasses, and a property lets ``prompt`` and
    # ``point_merge`` be their narrower ``Literal``.
    @property
    def prompt(self) -> str: ...
    @property
    def point_merge(self) -> str: ...
    @property
    def probability(self) -> bool: ...


def run_sam_batch(predictor: Predictor, batch: list[PreparedTile], sink: TileSink, config: InferenceOptions) -> None:
    """Encode a batch of tiles, decode all their prompts at once and write each tile's core.

    The predictor returns water masks (``bool``), or logits when ``probability.tif`` is written; with
    ``--prompt text`` SAM 3's instances combined with the coarse mask (``bool``,
    :func:`~samgeo_pipeline.run.text_prompts.text_water`; ``config.text_combine`` is the image's).

    Raises:
        SamInferenceError: SAM failed for a reason other than memory; the message names the tile(s).
    """
    try:
        embeddings, resized = predictor.embed([_rgb_of(p) for p in batch])
        if config.prompt == "text":  # SAM 3: every instance of the phrases, combined with the coarse mask
            results = text_water(predictor, embeddings, batch, config)  # type: ignore[arg-type]
        else:
            results = predictor.predict_masks(
                embeddings, [p.prompts for p in batch], _rgb_of(batch[0]).shape[:2], resized, config.point_merge,
                logits=config.probability,
            )
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise SamInferenceError(
                f"{sink.info.path}: SAM failed on {_tiles(batch)} ({one_line(exc)}); "
                "check the model (--model) and device (--device), or run with --model none"
            ) from exc
        _free_device_memory()
        if len(batch) == 1:
            sink.fail(batch[0], f"out of memory even alone ({one_line(exc)})")
            return
        half = len(batch) // 2
        run_sam_batch(predictor, batch[:half], sink, config)
        run_sam_batch(predictor, batch[half:], sink, config)
        return
    for prepared, result in zip(batch, results, strict=True):
        sink.write(prepared, result)
        sink.counts.sam += 1


def _rgb_of(prepared: PreparedTile) -> np.ndarray:
    """The tile's composite: every tile handed to SAM has one (it is None only without a model)."""
    assert prepared.rgb is not None, "a tile without a composite was handed to SAM"
    return prepared.rgb


def _tiles(batch: list[PreparedTile], shown: int = 3) -> str:
    """``tile row R col C``, or the batch's first ``shown`` tiles and how many more."""
    names = ", ".join(f"row {p.tile.row} col {p.tile.col}" for p in batch[:shown])
    if len(batch) == 1:
        return f"tile {names}"
    more = f" and {len(batch) - shown} more" if len(batch) > shown else ""
    return f"the batch of tiles {names}{more}"


def _free_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = ["InferenceOptions", "run_sam_batch", "is_out_of_memory"]
