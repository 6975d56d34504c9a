"""Samples prepared once for training, and the per-epoch prompts and batches made from them.

A :class:`PreparedSample` keeps what every epoch needs, small: the label, validity and prompt
masks bit-packed, and the low-resolution training target in SAM's mask frame. Prompts are drawn
again each epoch by the segment pipeline's own sampler
(:func:`~samgeo_pipeline.water.prompts.component_prompts`) from a generator keyed by (seed, epoch,
sample), so a run, and a resumed run, sees the same prompts whatever the worker layout.

Frames: the image (tile) frame is ``(rows, cols)`` pixels; SAM's input frame is the image resized
so its longest side is ``image_size`` and padded bottom/right; SAM's mask frame is that input at
``mask_size = image_size / 4`` pixels a side. Prompt coordinates are ``(x, y) = (col, row)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.sources import Sample, SampleSource
from samgeo_pipeline.sam.decode import RowBatch, prompt_rows
from samgeo_pipeline.sam.geometry import resized_shape
from samgeo_pipeline.water.prompts import ComponentPrompt, prompts_for


def pack(mask: np.ndarray) -> np.ndarray:
    """``bool (rows, cols)`` -> ``uint8`` bit-packed vector (8x smaller)."""
    return np.packbits(mask.ravel())


def unpack(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pack`: ``bool`` of ``shape``."""
    return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)


@dataclass
class PreparedSample:
    """What training needs of one sample, kept in memory for the whole run.

    Attributes:
        name: the sample's name.
        source_index: its index in the source (to read the image again when embeddings are not cached).
        shape: ``(rows, cols)`` of the image.
        resized: its size in SAM's input frame.
        label, valid: :func:`pack` ed ``bool (rows, cols)`` masks.
        prompt_mask: packed mask prompts are drawn from (the coarse mask), or None for the label.
        target: ``float32 (mask_size, mask_size)`` 0/1 label in SAM's mask frame.
        weight: ``float32 (mask_size, mask_size)`` 1 where the target counts (valid, inside the image).
        has_prompts: False when the prompt mask is empty (no prompt can be drawn).
    """

    name: str
    source_index: int
    shape: tuple[int, int]
    resized: tuple[int, int]
    label: np.ndarray
    valid: np.ndarray
    prompt_mask: np.ndarray | None
    target: np.ndarray
    weight: np.ndarray
    has_prompts: bool


def lowres_target(
    label: np.ndarray, valid: np.ndarray, resized: tuple[int, int], image_size: int, mask_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Label and weight in SAM's mask frame (what its ``pred_masks`` cover).

    Args:
        label, valid: ``bool (rows, cols)`` in the image frame.
        resized: the image's size in SAM's input frame.
        image_size: SAM's input side; mask_size: its low-resolution mask side.

    Returns:
        ``(target, weight)``: ``float32 (mask_size, mask_size)``, 0/1 each; zero weight on padding.
    """
    h = max(1, min(mask_size, round(resized[0] * mask_size / image_size)))
    w = max(1, min(mask_size, round(resized[1] * mask_size / image_size)))
    target = np.zeros((mask_size, mask_size), np.float32)
    weight = np.zeros((mask_size, mask_size), np.float32)
    target[:h, :w] = cv2.resize(label.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5
    weight[:h, :w] = cv2.resize(valid.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5
    return target, weight


def prepare_sample(
    sample: Sample, source_index: int, config: FinetuneConfig, image_size: int, mask_size: int
) -> PreparedSample:
    """Pack a loaded sample and compute its low-resolution target."""
    shape = sample.label.shape
    resized = resized_shape(shape, image_size)
    target, weight = lowres_target(sample.label, sample.valid, resized, image_size, mask_size)
    source_mask = sample.coarse if config.prompt_source == "coarse" else sample.label
    return PreparedSample(
        name=sample.name,
        source_index=source_index,
        shape=(int(shape[0]), int(shape[1])),
        resized=resized,
        label=pack(sample.label),
        valid=pack(sample.valid),
        prompt_mask=pack(sample.coarse) if config.prompt_source == "coarse" else None,
        target=target,
        weight=weight,
        has_prompts=bool(source_mask.any()),
    )


def sample_prompts(prepared: PreparedSample, config: FinetuneConfig, rng: np.random.Generator) -> list[ComponentPrompt]:
    """Prompts of one sample, drawn as the segment pipeline draws them (per component)."""
    packed = prepared.prompt_mask if prepared.prompt_mask is not None else prepared.label
    mask = unpack(packed, prepared.shape)
    if not mask.any():
        return []
    return prompts_for(mask, unpack(prepared.valid, prepared.shape), config, rng)


class PromptDataset(Dataset[dict[str, Any]]):
    """Items of one epoch: a sample's prompts (drawn anew each epoch), targets, and optionally its image.

    Args:
        prepared: the prepared samples of a split.
        config: prompt options and seed.
        image_size: SAM's input side.
        split_id: 0 for training (prompts change with ``epoch``), 1 for validation (fixed prompts).
        source: when given, items also carry the image (``rgb``), read from it: for runs without
            the embedding cache.
        native: also return the label and validity in the image frame (validation metrics).
    """

    def __init__(
        self,
        prepared: list[PreparedSample],
        config: FinetuneConfig,
        image_size: int,
        split_id: int,
        source: SampleSource | None = None,
        native: bool = False,
    ) -> None:
        self.prepared = prepared
        self.config = config
        self.image_size = image_size
        self.split_id = split_id
        self.source = source
        self.native = native
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Item at ``position`` (this dataset's ``epoch``), or at ``(epoch, position)``."""
        epoch, position = key if isinstance(key, tuple) else (self.epoch, key)
        ps = self.prepared[position]
        epoch = epoch if self.split_id == 0 else 0
        rng = np.random.default_rng([self.config.seed, self.split_id, epoch, position])
        prompts = sample_prompts(ps, self.config, rng)
        item = {
            "position": position,
            "rows": prompt_rows(prompts, self.config.point_merge, ps.shape, ps.resized),
            "target": ps.target,
            "weight": ps.weight,
            "shape": ps.shape,
            "resized": ps.resized,
        }
        if self.source is not None:
            item["rgb"] = self.source.load(ps.source_index).rgb
        if self.native:
            item["label"] = unpack(ps.label, ps.shape)
            item["valid"] = unpack(ps.valid, ps.shape)
        return item


@dataclass
class PromptBatch:
    """A collated batch.

    Attributes:
        positions: sample positions in the split.
        rows: the samples' decoder rows (:class:`~samgeo_pipeline.sam.decode.RowBatch`), unpadded.
        target, weight: ``float32 (B, 1, m, m)``.
        shapes, resized: per-sample image and input-frame sizes.
        rgb: per-sample ``uint8 (rows, cols, 3)`` images, or None.
        label, valid: per-sample ``bool (rows, cols)``, or None.
    """

    positions: list[int]
    rows: RowBatch
    target: torch.Tensor
    weight: torch.Tensor
    shapes: list[tuple[int, int]]
    resized: list[tuple[int, int]]
    rgb: list[np.ndarray] | None = None
    label: list[np.ndarray] | None = None
    valid: list[np.ndarray] | None = None

    @property
    def has_prompts(self) -> list[bool]:
        """Whether each sample has a prompt (a component to decode)."""
        return [count > 0 for count in self.rows.counts]

    def to(self, device: torch.device) -> PromptBatch:
        """The tensors moved to ``device``."""
        return replace(self, rows=self.rows.to(device), target=self.target.to(device, non_blocking=True),
                       weight=self.weight.to(device, non_blocking=True))  # fmt: skip


def collate(items: list[dict[str, Any]]) -> PromptBatch:
    """:class:`PromptDataset` items -> a :class:`PromptBatch` (rows grouped by shape, never padded)."""
    return PromptBatch(
        positions=[it["position"] for it in items],
        rows=RowBatch.build([it["rows"] for it in items]),
        target=torch.from_numpy(np.stack([it["target"] for it in items]))[:, None],
        weight=torch.from_numpy(np.stack([it["weight"] for it in items]))[:, None],
        shapes=[it["shape"] for it in items],
        resized=[it["resized"] for it in items],
        rgb=[it["rgb"] for it in items] if "rgb" in items[0] else None,
        label=[it["label"] for it in items] if "label" in items[0] else None,
        valid=[it["valid"] for it in items] if "valid" in items[0] else None,
    )


__all__ = [
    "PreparedSample",
    "PromptDataset",
    "PromptBatch",
    "collate",
    "prepare_sample",
    "sample_prompts",
    "lowres_target",
    "pack",
    "unpack",
]
