"""``finetune --resume`` from the command line: the stored run's options come back and training goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samgeo_pipeline.cli import main
from tests.finetune_data import write_chip_folder
from tests.tiny_sam import save_tiny_sam


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam(tmp_path_factory.mktemp("model") / "tiny64", image_size=64)


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chip_folder(tmp_path_factory.mktemp("data") / "chips", n=6)


def history(out: Path) -> list[dict]:
    return json.loads((out / "history.json").read_text())["history"]


def test_resume_from_the_cli_uses_the_stored_options(chips: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = ["finetune", "--data", str(chips), "--bands", "naip", "--model", str(tiny_model), "--out", str(out),
             "--epochs", "2", "--stop-after-epoch", "1", "--batch-size", "2", "--lr", "0.001", "--device", "cpu",
             "--no-progress"]  # fmt: skip
    assert main(first) == 0
    assert [h["epoch"] for h in history(out)] == [1]
    first_last = (out / "last").resolve()
    # Only --out and --resume: data, bands, model, epochs and lr come from the stored run.
    assert main(["finetune", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert [h["epoch"] for h in history(out)] == [1, 2]
    meta = json.loads((out / "last" / "samgeo_checkpoint.json").read_text())
    assert meta["epoch"] == 2 and meta["config"]["lr"] == 0.001 and meta["config"]["data"] == str(chips)
    assert (out / "last").resolve() != first_last and not first_last.exists()  # a new version, swapped in


def test_resume_without_a_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", "--out", str(tmp_path / "none"), "--resume", "--data", "x", "--no-progress"]) == 1
    assert "--resume" in capsys.readouterr().err
