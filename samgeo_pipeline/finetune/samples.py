"""Samples prepared once for training, and the per-epoch prompts and batches made from them.

A :class:`PreparedSample` keeps what every epoch needs, small: the label, validity and prompt
masks bit-packed, and the low-resolution training target in SAM's mask frame. Prompts are drawn
again each epoch by the segment pipeline's own sampler
(:func:`~samgeo_pipeline.prompts.component_prompts`) from a generator keyed by (seed, epoch,
sample), so a run, and a resumed run, sees the same prompts whatever the worker layout.

Frames: the image (tile) frame is ``(rows, cols)`` pixels; SAM's input frame is the image resized
so its longest side is ``image_size`` and padded bottom/right; SAM's mask frame is that input at
``mask_size = image_size / 4`` pixels a side. Prompt coordinates are ``(x, y) = (col, row)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.sources import Sample, SampleSource
from samgeo_pipeline.prompts import PAD_LABEL, ComponentPrompt, prompts_for


def pack(mask: np.ndarray) -> np.ndarray:
    """``bool (rows, cols)`` -> ``uint8`` bit-packed vector (8x smaller)."""
    return np.packbits(mask.ravel())


def unpack(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pack`: ``bool`` of ``shape``."""
    return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)


def resized_shape(shape: tuple[int, int], image_size: int) -> tuple[int, int]:
    """Size of an image of ``shape`` inside SAM's input, as :func:`~samgeo_pipeline.sam.preprocess_torch` resizes it."""
    scale = image_size / max(shape)
    return int(shape[0] * scale + 0.5), int(shape[1] * scale + 0.5)


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


def prompt_rows(
    prompts: list[ComponentPrompt], merge: str, scale_xy: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Prompt rows for SAM's decoder, as :class:`~samgeo_pipeline.sam.SamPredictor` builds them.

    Args:
        prompts: one prompt per component, in the image frame.
        merge: ``joint`` (one row per component), ``mean``/``best`` (one row per positive point with
            the component's negatives); boxes always give one row per component.
        scale_xy: image frame -> SAM input frame factors ``(x, y)``.

    Returns:
        ``(points, labels, boxes, groups)``: ``float32 (P, N, 2)``, ``int64 (P, N)`` (padding -10),
        ``float32 (P, 4)`` xyxy or None, and ``int64 (P,)`` the component of each row. Coordinates
        are in SAM's input frame.
    """
    scale = np.asarray(scale_xy, np.float32)
    if prompts and prompts[0].box_xyxy is not None:
        boxes = np.stack([p.box_xyxy for p in prompts]).astype(np.float32) * np.tile(scale, 2)
        return np.zeros((len(prompts), 0, 2), np.float32), np.zeros((len(prompts), 0), np.int64), boxes, np.arange(len(prompts))
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    groups: list[int] = []
    for k, p in enumerate(prompts):
        if merge == "joint":
            rows.append((p.points_xy, p.labels))
            groups.append(k)
            continue
        positive, negative = p.labels == 1, p.labels == 0
        for point in p.points_xy[positive]:
            rows.append((np.concatenate([point[None], p.points_xy[negative]]), np.r_[1, p.labels[negative]]))
            groups.append(k)
    width = max((len(r[0]) for r in rows), default=0)
    points = np.zeros((len(rows), width, 2), np.float32)
    labels = np.full((len(rows), width), PAD_LABEL, np.int64)
    for i, (xy, lab) in enumerate(rows):
        points[i, : len(xy)] = xy * scale
        labels[i, : len(lab)] = lab
    return points, labels, None, np.asarray(groups, np.int64)


class PromptDataset(Dataset):
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

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Item at ``position`` (this dataset's ``epoch``), or at ``(epoch, position)``."""
        epoch, position = key if isinstance(key, tuple) else (self.epoch, key)
        ps = self.prepared[position]
        epoch = epoch if self.split_id == 0 else 0
        rng = np.random.default_rng([self.config.seed, self.split_id, epoch, position])
        prompts = sample_prompts(ps, self.config, rng)
        scale = (ps.resized[1] / ps.shape[1], ps.resized[0] / ps.shape[0])
        points, labels, boxes, groups = prompt_rows(prompts, self.config.point_merge, scale)
        item = {
            "position": position,
            "points": points,
            "labels": labels,
            "boxes": boxes,
            "groups": groups,
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
    """A collated batch: prompt rows padded to ``P`` rows of ``N`` points.

    Attributes:
        positions: sample positions in the split.
        points: ``float32 (B, P, N, 2)`` or None for boxes; labels ``int64 (B, P, N)`` (-10 padding).
        boxes: ``float32 (B, P, 4)`` xyxy or None.
        groups: ``int64 (B, P)`` component of each row, -1 for padding rows.
        target, weight: ``float32 (B, 1, m, m)``.
        shapes, resized: per-sample image and input-frame sizes.
        rgb: per-sample ``uint8 (rows, cols, 3)`` images, or None.
        label, valid: per-sample ``bool (rows, cols)``, or None.
    """

    positions: list[int]
    points: torch.Tensor | None
    labels: torch.Tensor | None
    boxes: torch.Tensor | None
    groups: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor
    shapes: list[tuple[int, int]]
    resized: list[tuple[int, int]]
    rgb: list[np.ndarray] | None = None
    label: list[np.ndarray] | None = None
    valid: list[np.ndarray] | None = None

    def to(self, device: torch.device) -> PromptBatch:
        """The tensors moved to ``device``."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return PromptBatch(
            self.positions, move(self.points), move(self.labels), move(self.boxes), move(self.groups),
            move(self.target), move(self.weight), self.shapes, self.resized, self.rgb, self.label, self.valid,
        )  # fmt: skip


def collate(items: list[dict]) -> PromptBatch:
    """Pad and stack :class:`PromptDataset` items into a :class:`PromptBatch`."""
    n_rows = max(1, max(len(it["groups"]) for it in items))
    is_box = any(it["boxes"] is not None for it in items)
    batch = len(items)
    groups = torch.full((batch, n_rows), -1, dtype=torch.int64)
    points = labels = boxes = None
    if is_box:
        boxes = torch.zeros((batch, n_rows, 4), dtype=torch.float32)
        boxes[..., 2:] = 1.0
    else:
        n_points = max(1, max(it["points"].shape[1] for it in items))
        points = torch.zeros((batch, n_rows, n_points, 2), dtype=torch.float32)
        labels = torch.full((batch, n_rows, n_points), PAD_LABEL, dtype=torch.int64)
    for b, it in enumerate(items):
        p = len(it["groups"])
        groups[b, :p] = torch.from_numpy(it["groups"])
        if is_box and it["boxes"] is not None:
            boxes[b, :p] = torch.from_numpy(it["boxes"])  # type: ignore[index]
        elif not is_box:
            n = it["points"].shape[1]
            points[b, :p, :n] = torch.from_numpy(it["points"])  # type: ignore[index]
            labels[b, :p, :n] = torch.from_numpy(it["labels"])  # type: ignore[index]
    return PromptBatch(
        positions=[it["position"] for it in items],
        points=points,
        labels=labels,
        boxes=boxes,
        groups=groups,
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
    "prompt_rows",
    "lowres_target",
    "pack",
    "unpack",
    "resized_shape",
]
