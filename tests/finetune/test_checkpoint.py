"""Checkpoints of a fine-tuning run (:mod:`samgeo_pipeline.finetune.checkpoint`): versioned folders behind a link,
the meta file, the RNG states, resuming only with the run's options.

Refusing a pickle in ``training_state.pt`` is in ``tests/test_security.py``; a killed save in ``tests/io/test_atomic.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from samgeo_pipeline.errors import CheckpointError, ConfigError
from samgeo_pipeline.finetune.checkpoint import (
    TRAINING_STATE,
    load_state_file,
    load_training_state,
    read_meta,
    restore_rng,
    rng_states,
    save_checkpoint,
    stored_config,
)
from samgeo_pipeline.finetune.config import FinetuneConfig


class FakeModel(torch.nn.Module):
    """``save_pretrained`` writes one file holding ``tag``."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def save_pretrained(self, folder: Path) -> None:
        (Path(folder) / "model.safetensors").write_text(self.tag)


def versions(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".last.v-"))


def test_each_save_is_a_new_version_behind_the_link(tmp_path: Path) -> None:
    last = tmp_path / "last"
    save_checkpoint(last, FakeModel("epoch 1"), {"epoch": 1, "path": Path("/x"), "loss": np.float32(0.5)})
    first = versions(tmp_path)
    assert last.is_symlink() and len(first) == 1 and (last / "model.safetensors").read_text() == "epoch 1"
    assert read_meta(last) == {"epoch": 1, "path": "/x", "loss": 0.5}  # NumPy scalars and paths as JSON
    save_checkpoint(last, FakeModel("epoch 2"), {"epoch": 2}, state={"epoch": 2})
    assert (last / "model.safetensors").read_text() == "epoch 2" and (last / TRAINING_STATE).is_file()
    assert len(versions(tmp_path)) == 1 and versions(tmp_path) != first  # the previous version is gone


def test_a_real_folder_of_an_older_version_becomes_a_link(tmp_path: Path) -> None:
    last = tmp_path / "last"
    last.mkdir()
    (last / "model.safetensors").write_text("old")
    save_checkpoint(last, FakeModel("new"), {"epoch": 3})
    assert last.is_symlink() and (last / "model.safetensors").read_text() == "new" and len(versions(tmp_path)) == 1


def test_read_meta_of_a_folder_that_is_no_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"samgeo_checkpoint\.json: not a fine-tuning checkpoint"):
        read_meta(tmp_path)
    assert stored_config(tmp_path) is None


def test_rng_states_round_trip_through_the_state_file(tmp_path: Path) -> None:
    states = rng_states()
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    torch.save({"optimizer": {}, "scheduler": {}, "epoch": 1, "rng": states}, tmp_path / "s.pt")
    restore_rng(load_state_file(tmp_path / "s.pt")["rng"])
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected
    torch.save({"epoch": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a training state of samgeo-pipeline"):
        load_state_file(tmp_path / "other.pt")


def test_resume_only_with_the_runs_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--resume: .*training_state.pt not found; start without --resume"):
        load_training_state(tmp_path, FinetuneConfig())
    run = FinetuneConfig(lr=1e-4)
    state = {"optimizer": {}, "scheduler": {}, "epoch": 4, "rng": {}}
    save_checkpoint(tmp_path / "last", FakeModel("w"), {"config": run.to_dict()}, state=state)
    assert stored_config(tmp_path) == run
    assert load_training_state(tmp_path, run)["epoch"] == 4
    differ = r"options differ from the run in .* \(lr: run 0\.0001, now 1e-05\); pass the run's options"
    with pytest.raises(ConfigError, match=differ):
        load_training_state(tmp_path, FinetuneConfig())
    assert json.loads((tmp_path / "last" / "samgeo_checkpoint.json").read_text())["config"]["lr"] == 1e-4
