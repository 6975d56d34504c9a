"""Weights only from ``.safetensors`` files inside the model folder, index files included (issue 21, row 2).

A ``model.safetensors.index.json`` whose weight map names a pickle (``pytorch_model.bin``) or a
file outside the folder is refused in one line before transformers opens anything; a legit sharded
folder loads, and its fingerprint covers every shard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from samgeo_pipeline.cli import main
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import ModelUnavailableError
from samgeo_pipeline.outputs.fingerprint import model_fingerprint
from samgeo_pipeline.sam.predictor import load_sam_model
from samgeo_pipeline.sam.weights import weight_files
from tests.test_security import Payload, error_lines
from tests.tiny_sam import save_tiny_sam, tiny_sam


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(tmp_path_factory.mktemp("scene") / "scene.tif", 100, 120)


def pickle_behind_index(folder: Path, shard: str, payload: object | None = None) -> Path:
    """The issue's folder: config.json, a junk x.safetensors, an index mapping every key to ``shard``
    (the tiny SAM's state dict saved there by torch.save, or ``payload``)."""
    model = tiny_sam()
    model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    (folder / "x.safetensors").write_bytes(b"junk")
    target = folder / shard
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload if payload is not None else model.state_dict(), target)
    index = {"metadata": {}, "weight_map": {key: shard for key in model.state_dict()}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


@pytest.mark.parametrize("shard", ["pytorch_model.bin", "../other/pytorch_model.bin"])
def test_a_pickle_named_by_an_index_is_refused_through_the_cli(scene: Path, tmp_path: Path, capsys, shard: str) -> None:
    folder = pickle_behind_index(tmp_path / "model", shard)
    code = main(["segment", str(scene), "--out", str(tmp_path / "out"), "--model", str(folder), "--no-progress"])
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert code == 1 and len(lines) == 1 and "Traceback" not in captured.err
    assert str(folder) in lines[0] and repr(shard) in lines[0]
    assert "done" not in captured.out + captured.err
    assert not (tmp_path / "out" / "scene" / "manifest.json").exists()


def test_a_malicious_pickle_behind_an_index_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    called: list[object] = []
    monkeypatch.setattr(transformers.SamModel, "from_pretrained", lambda *a, **k: called.append(a))
    marker = tmp_path / "PWNED"
    folder = pickle_behind_index(tmp_path / "model", "pytorch_model.bin", {"w": Payload(marker)})
    with pytest.raises(ModelUnavailableError, match=r"'pytorch_model.bin' is not a \.safetensors file") as caught:
        load_sam_model(str(folder))
    assert "\n" not in str(caught.value) and not marker.exists() and not called  # refused before transformers


def index_naming(folder: Path, name: str) -> Path:
    """A valid tiny SAM folder whose index names ``name`` for its first key (the rest in model.safetensors)."""
    save_tiny_sam(folder)
    os.replace(folder / "model.safetensors", folder / "shard.safetensors")
    keys = list(tiny_sam().state_dict())
    weight_map = {key: "shard.safetensors" for key in keys} | {keys[0]: name}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../outside.safetensors", "outside the model folder"),
        ("/tmp/abs.safetensors", "outside the model folder"),
        ("sub/../../outside.safetensors", "outside the model folder"),
        ("link.safetensors", "a link that resolves outside"),
        ("absent.safetensors", "missing"),
        ("model.safetensors.index.json", "not a .safetensors file"),
    ],
)
def test_index_names_outside_the_folder_are_refused(tmp_path: Path, name: str, reason: str) -> None:
    folder = index_naming(tmp_path / "model", name)
    (tmp_path / "outside.safetensors").write_bytes((folder / "shard.safetensors").read_bytes())
    (folder / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")
    with pytest.raises(ModelUnavailableError, match=rf"^{folder}: .*{name!r} is {reason}.*\.safetensors files inside"):
        load_sam_model(str(folder))


def test_a_link_for_model_safetensors_resolving_outside_is_refused(tmp_path: Path) -> None:
    folder = save_tiny_sam(tmp_path / "model")
    os.replace(folder / "model.safetensors", tmp_path / "elsewhere.safetensors")
    (folder / "model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    with pytest.raises(ModelUnavailableError, match="resolves outside the model folder"):
        load_sam_model(str(folder))


def test_config_transformers_weights_naming_a_pickle_is_refused(tmp_path: Path) -> None:
    folder = save_tiny_sam(tmp_path / "model")
    torch.save(tiny_sam().state_dict(), folder / "adapter_model.bin")
    config = json.loads((folder / "config.json").read_text()) | {"transformers_weights": "adapter_model.bin"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelUnavailableError, match=r"'adapter_model.bin' is not a \.safetensors file"):
        load_sam_model(str(folder))


def test_a_sharded_safetensors_folder_loads_and_its_fingerprint_covers_every_shard(tmp_path: Path) -> None:
    model = tiny_sam()
    folder = tmp_path / "sharded"
    model.save_pretrained(folder, max_shard_size="100KB")
    files = weight_files(folder)
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) >= 3 and files == [folder.resolve() / "model.safetensors.index.json", *(s.resolve() for s in shards)]
    loaded, source = load_sam_model(str(folder))
    assert source.origin == "local directory"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    before = model_fingerprint(str(folder))
    (folder / "x.safetensors").write_bytes(b"not loaded")  # not named by the index: not part of the model
    assert model_fingerprint(str(folder)) == before
    with open(shards[-1], "r+b") as fh:  # one byte of the last shard's tensor data
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 1]))
    assert model_fingerprint(str(folder)) != before


def hub_snapshot(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry of ``repo`` as huggingface_hub lays it out: blobs and links to them."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("a" * 40)
    for i, (name, data) in enumerate(files.items()):
        (repo_dir / "blobs" / f"blob{i}").write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", f"blob{i}"))
    return snapshot


def test_hub_cache_snapshots_follow_the_same_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    good = save_tiny_sam(tmp_path / "good")
    hub_snapshot(tmp_path / "hub", "someone/good", {f.name: f.read_bytes() for f in good.iterdir()})
    loaded, source = load_sam_model("someone/good")
    assert source.origin == "hub cache" and loaded.config.vision_config.image_size == 256
    bad = pickle_behind_index(tmp_path / "bad", "pytorch_model.bin")
    hub_snapshot(tmp_path / "hub", "someone/bad", {f.name: f.read_bytes() for f in bad.iterdir()})
    with pytest.raises(ModelUnavailableError, match=r"snapshots/a{40}: .*'pytorch_model.bin' is not a \.safetensors"):
        load_sam_model("someone/bad")
    partial = index_naming(tmp_path / "partial", "absent.safetensors")  # an interrupted download: not cached
    hub_snapshot(tmp_path / "hub", "someone/partial", {f.name: f.read_bytes() for f in partial.iterdir()})
    with pytest.raises(ModelUnavailableError, match=r"not in the Hugging Face cache .*HF_HUB_OFFLINE is set"):
        load_sam_model("someone/partial")
