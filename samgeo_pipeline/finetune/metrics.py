"""Per-image binary metrics of a water mask against its label, and their summaries.

Water is the positive class; only valid pixels (data present, label known) count. Each image gets
its confusion counts and IoU, F1 (= Dice), precision and recall computed on its flattened mask,
then a set of images is summarised by the mean and the median of each, plus the pooled scores of
the summed counts (one number for all pixels, as a per-pixel benchmark reports).

Empty masks: a ratio whose denominator is 0 is **1.0 when prediction and label are both empty**
and **0.0 otherwise**. So an image without water that the model leaves empty scores 1.0 on every
metric; an empty prediction on an image with water has precision 0.0 (and IoU, F1, recall 0.0);
water predicted on an image without water has recall 0.0 (and IoU, F1, precision 0.0).

Prompt quality (:func:`prompt_quality`) scores the point prompts drawn from a coarse mask against
the label: positives on labelled water, negatives on land, and the labelled water bodies that get
at least one positive point. Its fractions are None when their denominator is 0 (no positive, no
negative, no body big enough); sets of images are pooled by summing the counts
(:func:`pool_prompt_quality`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
from scipy import ndimage

METRICS = ("iou", "f1", "precision", "recall")


@dataclass(frozen=True)
class Confusion:
    """Pixel counts of one image (or pooled over images)."""

    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def scores(self) -> dict[str, float]:
        """IoU, F1, precision and recall, with the empty-mask convention of this module."""
        both_empty = self.tp + self.fp + self.fn == 0
        return {
            "iou": _ratio(self.tp, self.tp + self.fp + self.fn, both_empty),
            "f1": _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, both_empty),
            "precision": _ratio(self.tp, self.tp + self.fp, both_empty),
            "recall": _ratio(self.tp, self.tp + self.fn, both_empty),
        }


def _ratio(num: int, den: int, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def confusion(
    pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor | None = None
) -> Confusion:
    """Confusion counts of a predicted mask against its label.

    Args:
        pred, label: ``bool (rows, cols)`` (NumPy or torch, any device), True = water.
        valid: ``bool (rows, cols)`` pixels that count, or None for all.
    """
    if isinstance(pred, torch.Tensor):
        label = torch.as_tensor(label, device=pred.device)
        valid_t = torch.ones_like(pred, dtype=torch.bool) if valid is None else torch.as_tensor(valid, device=pred.device)
        p, t = pred & valid_t, label & valid_t
        counts = [int(v) for v in torch.stack([(p & t).sum(), (p & ~t).sum(), (~p & t & valid_t).sum(), valid_t.sum()]).tolist()]
    else:
        valid_a = np.ones(pred.shape, bool) if valid is None else np.asarray(valid, bool)
        p, t = np.asarray(pred, bool) & valid_a, np.asarray(label, bool) & valid_a
        counts = [int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum()), int(valid_a.sum())]
    tp, fp, fn, n = counts
    return Confusion(tp, fp, fn, n - tp - fp - fn)


def image_row(name: str, counts: Confusion) -> dict[str, object]:
    """One image's record: name, counts and scores."""
    return {"name": name, **asdict(counts), **counts.scores()}


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, object]:
    """Mean and median of each metric over images, pooled scores, and the image count.

    Returns:
        ``{"n": ..., "iou_mean": ..., "iou_median": ..., ..., "pooled": {"iou": ..., ...}}``; the
        means and medians are None for an empty set. When rows carry a ``prompts`` record
        (:func:`prompt_quality`), ``"prompts"`` holds them pooled (:func:`pool_prompt_quality`).
    """
    summary: dict[str, object] = {"n": len(rows)}
    for metric in METRICS:
        values = np.array([float(r[metric]) for r in rows])
        summary[f"{metric}_mean"] = float(values.mean()) if len(values) else None
        summary[f"{metric}_median"] = float(np.median(values)) if len(values) else None
    pooled = Confusion(0, 0, 0, 0)
    for r in rows:
        pooled = pooled + Confusion(int(r["tp"]), int(r["fp"]), int(r["fn"]), int(r["tn"]))
    summary["pooled"] = pooled.scores()
    quality = [r["prompts"] for r in rows if r.get("prompts")]
    if quality:  # rows with a prompt_quality() record (evaluate's point prompts)
        summary["prompts"] = pool_prompt_quality(quality)
    return summary


#: Water bodies (8-connected label components) of more than this many pixels should each get a positive point.
MIN_BODY_PX = 1000

#: The counts of :func:`prompt_quality` (summed by :func:`pool_prompt_quality`).
PROMPT_COUNTS = ("positives", "positives_on_water", "negatives", "negatives_on_land", "bodies", "bodies_prompted",
                 "points_ignored")  # fmt: skip


class PointPrompt(Protocol):
    """What :func:`prompt_quality` reads of a prompt (:class:`~samgeo_pipeline.water.prompts.ComponentPrompt`)."""

    # Read-only properties: ComponentPrompt is a frozen dataclass.
    @property
    def points_xy(self) -> np.ndarray: ...
    @property
    def labels(self) -> np.ndarray: ...


def prompt_quality(
    prompts: Iterable[PointPrompt], label: np.ndarray, min_body_px: int = MIN_BODY_PX, valid: np.ndarray | None = None
) -> dict[str, Any]:
    """How well point prompts sit on the labelled water.

    Args:
        prompts: prompts in the frame of ``label``, e.g. :class:`~samgeo_pipeline.water.prompts.ComponentPrompt`;
            ``points_xy`` is ``(n, 2)`` **(x, y) = (col, row)** pixel coordinates (rounded to the
            nearest pixel), ``labels`` is ``(n,)``: 1 positive, 0 negative (other labels, e.g. SAM's
            padding, are ignored). Box prompts carry no points and count nothing.
        label: ``bool (rows, cols)``, True = water.
        min_body_px: a water body (8-connected component of ``label``) counts when it has **more**
            than this many pixels.
        valid: ``bool (rows, cols)`` pixels whose label is known (None: all). Points off the image or
            on invalid pixels count neither way (``points_ignored``); bodies are taken in
            ``label & valid``.

    Returns:
        The counts ``positives``, ``positives_on_water``, ``negatives``, ``negatives_on_land``,
        ``bodies`` (water bodies > ``min_body_px``), ``bodies_prompted`` (of them, those holding at
        least one positive point), ``points_ignored``; the fractions ``positives_on_water_fraction``,
        ``negatives_on_land_fraction``, ``bodies_prompted_fraction`` (None when the denominator is
        0); and ``min_body_px``.
    """
    label = np.asarray(label, bool)
    known = np.ones(label.shape, bool) if valid is None else np.asarray(valid, bool)
    water = label & known
    bodies, n = ndimage.label(water, structure=np.ones((3, 3), bool))
    sizes = np.bincount(bodies.ravel(), minlength=n + 1)
    big = sizes > min_body_px
    big[0] = False
    prompted = np.zeros(n + 1, bool)
    counts = dict.fromkeys(PROMPT_COUNTS, 0)
    height, width = label.shape
    for prompt in prompts:
        xy = np.asarray(prompt.points_xy, np.float64).reshape(-1, 2)
        kinds = np.asarray(prompt.labels).reshape(-1)
        cols, rows = np.rint(xy[:, 0]).astype(np.int64), np.rint(xy[:, 1]).astype(np.int64)
        for row, col, kind in zip(rows, cols, kinds, strict=True):
            if kind not in (0, 1):
                continue
            if not (0 <= row < height and 0 <= col < width) or not known[row, col]:
                counts["points_ignored"] += 1
            elif kind == 1:
                counts["positives"] += 1
                counts["positives_on_water"] += int(label[row, col])
                prompted[bodies[row, col]] = True
            else:
                counts["negatives"] += 1
                counts["negatives_on_land"] += int(not label[row, col])
    counts["bodies"] = int(big.sum())
    counts["bodies_prompted"] = int((big & prompted).sum())
    return _prompt_fractions(counts, min_body_px)


def pool_prompt_quality(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """:func:`prompt_quality` of a set of images: counts summed, fractions of the sums."""
    counts = dict.fromkeys(PROMPT_COUNTS, 0)
    min_body_px = None
    for item in items:
        for key in PROMPT_COUNTS:
            counts[key] += int(item[key])
        min_body_px = item.get("min_body_px", min_body_px)
    return _prompt_fractions(counts, min_body_px)


def _prompt_fractions(counts: dict[str, int], min_body_px: int | None) -> dict[str, Any]:
    def frac(num: str, den: str) -> float | None:
        return counts[num] / counts[den] if counts[den] else None

    return {
        **counts,
        "positives_on_water_fraction": frac("positives_on_water", "positives"),
        "negatives_on_land_fraction": frac("negatives_on_land", "negatives"),
        "bodies_prompted_fraction": frac("bodies_prompted", "bodies"),
        "min_body_px": min_body_px,
    }


__all__ = ["Confusion", "confusion", "image_row", "summarize", "METRICS", "prompt_quality", "pool_prompt_quality",
           "MIN_BODY_PX"]  # fmt: skip
