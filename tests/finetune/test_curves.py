"""The training curves (:mod:`samgeo_pipeline.finetune.curves`): a PNG from any history, written atomically."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from samgeo_pipeline.finetune.curves import plot_curves


def test_curves_with_and_without_validation(tmp_path: Path) -> None:
    history = [
        {"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val": {"iou_mean": 0.4, "iou_median": 0.5, "f1_mean": None}},
        {"epoch": 2, "train_loss": 0.7, "val_loss": None, "val": None},  # an epoch without validation
        {"epoch": 3, "train_loss": 0.5, "val_loss": 0.6, "val": {"iou_mean": 0.6, "iou_median": 0.7}},
    ]
    path = plot_curves(history, tmp_path / "curves.png", title="run")
    assert path == tmp_path / "curves.png" and Image.open(path).size == (1210, 440)  # 11 x 4 inches at 110 dpi
    train_only = plot_curves([{"epoch": 1, "train_loss": 0.9}], tmp_path / "train.png")
    assert Image.open(train_only).format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "train.png"]  # no temporary left
