"""What identifies an input's bytes (file_sha256) and a model's weights (model_fingerprint): the keys
of reuse, of the manifest and of the flow's cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from samgeo_pipeline.outputs.fingerprint import file_sha256, model_fingerprint
from tests.sam.test_weights import hub_snapshot, pickle_behind_index


def test_file_sha256_streams_the_whole_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000 + b"tail"
    path = tmp_path / "scene.tif"
    path.write_bytes(data)
    assert file_sha256(path, chunk=1000) == file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_a_refused_folder_is_never_reused(tmp_path: Path) -> None:
    folder = pickle_behind_index(tmp_path / "model", "pytorch_model.bin")
    assert model_fingerprint(str(folder)).startswith("unloadable:")


def test_a_local_models_json_files_are_part_of_it(tmp_path: Path) -> None:
    from tests.tiny_sam import save_tiny_sam

    folder = save_tiny_sam(tmp_path / "model")
    before = model_fingerprint(str(folder))
    (folder / "checkpoint_meta.json").write_text("{}")  # e.g. a fine-tuned checkpoint's preprocessing
    assert model_fingerprint(str(folder)) != before


def test_a_cached_hub_id_names_its_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    hub_snapshot(tmp_path / "hub", "someone/sam-cached", {"config.json": b"{}"})
    assert model_fingerprint("someone/sam-cached") == "someone/sam-cached@" + "a" * 40


class TestModelFingerprint:
    def test_bytes_not_path_identify_a_local_model(self, tmp_path: Path) -> None:
        import shutil

        from samgeo_pipeline.outputs.fingerprint import model_fingerprint
        from tests.tiny_sam import save_tiny_sam

        first = save_tiny_sam(tmp_path / "a", seed=0)
        copy = Path(shutil.copytree(first, tmp_path / "b"))
        assert model_fingerprint(str(first)) == model_fingerprint(str(copy))  # same weights elsewhere
        save_tiny_sam(copy, seed=1)
        assert model_fingerprint(str(first)) != model_fingerprint(str(copy))
        assert model_fingerprint("none") == "none"

    def test_hub_id_without_cache(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        from samgeo_pipeline.outputs.fingerprint import model_fingerprint

        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
        assert model_fingerprint("someone/sam-nowhere") == "someone/sam-nowhere@unknown revision"

