"""Per-image binary metrics of a water mask against its label, and their summaries.

Water is the positive class; only valid pixels (data present, label known) count. Each image gets
its confusion counts and IoU, F1 (= Dice), precision and recall computed on its flattened mask,
then a set of images is summarised by the mean and the median of each, plus the pooled scores of
the summed counts (one number for all pixels, as a per-pixel benchmark reports).

Empty masks: a ratio whose denominator is 0 is **1.0 when prediction and label are both empty**
and **0.0 otherwise**. So an image without water that the model leaves empty scores 1.0 on every
metric; an empty prediction on an image with water has precision 0.0 (and IoU, F1, recall 0.0);
water predicted on an image without water has recall 0.0 (and IoU, F1, precision 0.0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

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


def confusion(pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor | None = None) -> Confusion:
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


def summarize(rows: Sequence[dict[str, object]]) -> dict[str, object]:
    """Mean and median of each metric over images, pooled scores, and the image count.

    Returns:
        ``{"n": ..., "iou_mean": ..., "iou_median": ..., ..., "pooled": {"iou": ..., ...}}``; the
        means and medians are None for an empty set.
    """
    summary: dict[str, object] = {"n": len(rows)}
    for metric in METRICS:
        values = np.array([float(r[metric]) for r in rows])  # type: ignore[arg-type]
        summary[f"{metric}_mean"] = float(values.mean()) if len(values) else None
        summary[f"{metric}_median"] = float(np.median(values)) if len(values) else None
    pooled = Confusion(0, 0, 0, 0)
    for r in rows:
        pooled = pooled + Confusion(int(r["tp"]), int(r["fp"]), int(r["fn"]), int(r["tn"]))  # type: ignore[arg-type]
    summary["pooled"] = pooled.scores()
    return summary


__all__ = ["Confusion", "confusion", "image_row", "summarize", "METRICS"]
