"""evaluate and the finetune/evaluate commands on datasets the tests write (no Cellula needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samgeo_pipeline.cli import main
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.evaluate import COARSE, evaluate, sample_prompts
from samgeo_pipeline.finetune.metrics import confusion, pool_prompt_quality, prompt_quality
from samgeo_pipeline.finetune.sources import open_datasets
from samgeo_pipeline.finetune.train import finetune
from tests.finetune_data import write_chip_folder, write_hf_dataset, write_label_polygons, write_ortho
from tests.tiny_sam import save_tiny_sam


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam(tmp_path_factory.mktemp("model") / "tiny64", image_size=64)


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chip_folder(tmp_path_factory.mktemp("data") / "chips", n=10)


def test_evaluate_methods_and_reports(chips: Path, tiny_model: Path, tmp_path: Path) -> None:
    config = FinetuneConfig(data=str(chips), bands="naip", val_fraction=0.5, device="cpu", box_jitter=0)
    result = evaluate(config, [str(tiny_model), "none"], tmp_path / "eval", "val", log=None)
    label = tiny_model.name
    assert list(result.methods) == [COARSE, f"{label} points@coarse", f"{label} points@label",
                                    f"{label} box@coarse", f"{label} box@label"]  # fmt: skip
    _, val = open_datasets(config)
    assert val is not None
    coarse_rows = [r for r in result.images if r["method"] == COARSE]
    assert [r["name"] for r in coarse_rows] == val.names
    for i, row in enumerate(coarse_rows):
        sample = val.load(i)
        assert row["iou"] == confusion(sample.coarse, sample.label, sample.valid).scores()["iou"]
        # The coarse mask's prompt quality is that of the points points@coarse was given.
        points = sample_prompts(config, "points", sample.coarse, sample.valid, i)
        assert row["prompts"] == prompt_quality(points, sample.label, valid=sample.valid)
    points_coarse = [r for r in result.images if r["method"] == f"{label} points@coarse"]
    assert [r["prompts"] for r in points_coarse] == [r["prompts"] for r in coarse_rows]
    assert all("prompts" not in r for r in result.images if "box@" in r["method"])
    assert result.methods[COARSE]["prompts"] == pool_prompt_quality(r["prompts"] for r in coarse_rows)
    assert result.methods[f"{label} points@label"]["prompts"]["positives_on_water_fraction"] == 1.0
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["methods"][COARSE]["n"] == len(val)
    assert report["methods"][COARSE]["prompts"]["positives"] == result.methods[COARSE]["prompts"]["positives"]
    markdown = (tmp_path / "eval" / "evaluation.md").read_text()
    assert "| coarse mask |" in markdown and "## IoU per image" in markdown
    assert "## Prompt quality (points)" in markdown and f"| {label} points@coarse |" in markdown.split("## IoU")[0]


def test_finetune_and_evaluate_commands(chips: Path, tiny_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    config = tmp_path / "ft.yaml"
    config.write_text(f"data: {chips}\nbands: naip\nepochs: 2\nbatch_size: 2\nlr: 0.001\ndevice: cpu\n")
    code = main(["finetune", "--config", str(config), "--model", str(tiny_model), "--out", str(out), "--prompt", "box",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"best", "last", "history.json", "curves.png"}
    meta = json.loads((out / "best" / "samgeo_checkpoint.json").read_text())
    assert meta["preprocessing"]["composite"] == ["red", "green", "blue"] and meta["preprocessing"]["bands"] == "naip"
    assert meta["config"]["prompt"] == "box" and len(meta["history"]) >= 1
    code = main(["evaluate", "--model", str(out / "best"), "--data", str(chips), "--bands", "naip", "--device", "cpu",
                 "--prompts", "box", "--prompt-sources", "coarse", "--out", str(tmp_path / "eval")])  # fmt: skip
    assert code == 0
    assert "run/best box@coarse" in capsys.readouterr().out


def test_finetune_hf_dataset_with_box_prompts(tiny_model: Path, tmp_path: Path) -> None:
    data = write_hf_dataset(tmp_path / "ds", n_train=6, n_val=3)
    config = FinetuneConfig(data=str(data), model=str(tiny_model), epochs=1, batch_size=3, prompt="box", box_jitter=2,
                            device="cpu", progress=False, out=str(tmp_path / "run"))  # fmt: skip
    result = finetune(config, log=None)
    assert result.counts == {"train": 5, "val": 3, "dropped": 0, "unprompted": 1}  # every fifth sample has no water
    assert result.history[0]["val"]["n"] == 3


def test_finetune_ortho_with_polygons_and_coarse_prompts(tiny_model: Path, tmp_path: Path) -> None:
    image = write_ortho(tmp_path / "ortho.tif")
    labels = write_label_polygons(tmp_path / "lakes.gpkg", crs="EPSG:4326")
    config = FinetuneConfig(data=str(image), labels=str(labels), bands="naip", tile_size=128, halo=0, val_fraction=0.3,
                            prompt_source="coarse", model=str(tiny_model), epochs=1, device="cpu", progress=False,
                            out=str(tmp_path / "run"))  # fmt: skip
    result = finetune(config, log=None)
    assert result.counts["train"] + result.counts["val"] + result.counts["unprompted"] == 6
    assert result.history[0]["val"] is not None


def test_worker_processes_give_the_same_run(chips: Path, tiny_model: Path, tmp_path: Path) -> None:
    """Persistent data-loader workers draw the same per-epoch prompts as the main process."""
    histories = []
    for workers in (0, 1):
        config = FinetuneConfig(data=str(chips), bands="naip", model=str(tiny_model), epochs=2, batch_size=2,
                                lr=1e-3, device="cpu", progress=False, workers=workers,
                                out=str(tmp_path / f"w{workers}"))  # fmt: skip
        histories.append([(h["train_loss"], h["val_loss"]) for h in finetune(config, log=None).history])
    assert histories[0] == histories[1]


def test_evaluate_reproduces_training_validation(chips: Path, tiny_model: Path, tmp_path: Path) -> None:
    """evaluate's points@label on the validation split scores exactly what training's validation did."""
    config = FinetuneConfig(data=str(chips), bands="naip", model=str(tiny_model), epochs=1, batch_size=2, lr=1e-3,
                            val_fraction=0.4, device="cpu", progress=False, out=str(tmp_path / "run"))  # fmt: skip
    result = finetune(config, log=None)
    assert result.best_dir is not None
    report = evaluate(config, [str(result.best_dir)], None, "val", prompts=["points"], prompt_sources=["label"], log=None)
    summary = report.methods["run/best points@label"]
    trained = result.history[0]["val"]
    assert summary["n"] == trained["n"]
    for key in ("iou_mean", "iou_median", "f1_mean", "precision_mean", "recall_mean"):
        assert summary[key] == pytest.approx(trained[key], abs=1e-9), key


@pytest.mark.parametrize("split", ["train", "all"])
def test_evaluate_other_splits(chips: Path, split: str) -> None:
    """--split train scores the training part, --split all both parts (train first), each image once."""
    config = FinetuneConfig(data=str(chips), bands="naip", val_fraction=0.5, device="cpu")
    result = evaluate(config, ["none"], None, split, log=None)
    train, val = open_datasets(config)
    assert val is not None and set(train.names).isdisjoint(val.names)
    expected = train.names if split == "train" else train.names + val.names
    assert [r["name"] for r in result.images if r["method"] == COARSE] == expected
    assert result.methods[COARSE]["n"] == len(expected)


def test_evaluate_val_split_needs_a_validation_part(chips: Path) -> None:
    from samgeo_pipeline.errors import ConfigError

    config = FinetuneConfig(data=str(chips), bands="naip", val_fraction=0.0, device="cpu")
    with pytest.raises(ConfigError, match="--split val"):
        evaluate(config, ["none"], None, "val", log=None)
    assert evaluate(config, ["none"], None, "all", log=None).methods[COARSE]["n"] == len(open_datasets(config)[0])
