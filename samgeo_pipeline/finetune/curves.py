"""Training curves: losses and validation metrics per epoch, as one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samgeo_pipeline.io.atomic import atomic_path


def plot_curves(history: Sequence[dict[str, Any]], path: Path, title: str = "fine-tuning") -> Path:
    """Write a two-panel PNG: train/validation loss, and validation IoU/F1 (mean and median).

    Args:
        history: per-epoch records (``epoch``, ``train_loss``, ``val_loss``, ``val`` summary).
        path: output PNG.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    val_loss = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if val_loss:
        ax_loss.plot(*zip(*val_loss, strict=True), "s-", label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    styles = {"iou_mean": "o-", "iou_median": "o--", "f1_mean": "s-", "f1_median": "s--"}
    plotted = False
    for key, style in styles.items():
        points = [(h["epoch"], h["val"][key]) for h in history if h.get("val") and h["val"].get(key) is not None]
        if points:
            ax_metric.plot(*zip(*points, strict=True), style, label=key.replace("_", " "))
            plotted = True
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel("validation score")
    ax_metric.set_ylim(0, 1)
    if plotted:
        ax_metric.legend()
    ax_metric.grid(alpha=0.3)
    fig.suptitle(title)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


__all__ = ["plot_curves"]
