"""The flows' plain helpers (:mod:`flows.common`): configuration, output folders, links, cache keys, URLs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flows import common
from samgeo_pipeline.config import SegmentConfig

OPTIONS = {"model": "none", "tile_size": 256, "halo": 32}


def _config(**changes) -> SegmentConfig:
    return common.build_config({**OPTIONS, **changes})


def test_build_config_layers_file_then_options(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: none\ntile_size: 512\nhalo: 64\n")
    config = common.build_config({"halo": 32}, path)
    assert (config.model, config.tile_size, config.halo, config.progress) == ("none", 512, 32, False)
    with pytest.raises(ValueError, match="unknown option 'tiles'"):
        common.build_config({"tiles": 3})


def test_output_dirs_and_links(tmp_path: Path) -> None:
    root = tmp_path / "out"
    dirs = common.image_output_dirs(["/in/a/x.tif", "/in/b/x.tif", "/in/y.tif"], root)
    assert dirs[2] == root / "y" and dirs[0] != dirs[1] and dirs[0].name.startswith("x_")
    assert common.image_output_dirs(["/in/a/x.tif", "s3://bkt/in/b/x.tif"], root, "/in") == [
        root / "a" / "x", root / "x"]
    assert common.image_output_dirs(["s3://bkt/in/b/x.tif"], root, "s3://bkt/in") == [root / "b" / "x"]
    assert common.image_output_dirs(["memory:///w/in/b/x.tif"], root, "memory://w/in") == [root / "b" / "x"]
    (root / "a b").mkdir(parents=True)
    (root / "a b" / "mask.tif").write_bytes(b"x")
    links = common.output_links(root / "a b", root, common.base_url("https://h.example/data"))
    assert links == {"mask.tif": "https://h.example/data/a%20b/mask.tif"}


def test_output_dirs_cannot_escape_and_suffixes_differ(tmp_path: Path) -> None:
    """Issue 11: ``..`` in a URL wrote outside the output root; ``x.tif`` and ``x.tiff`` shared a folder."""
    from samgeo_pipeline.io.paths import check_inside

    root = tmp_path / "out"
    escaping = common.image_output_dirs(["memory://incoming/../../../esc/y.tif"], root, "memory://incoming")
    assert escaping == [root / "y"]
    dots = common.image_output_dirs(["/in/...tif", "/in/..tif", "/in/a/../../../y.tif"], root, "/in")
    assert dots == [root / "__", root / "_", root / "y"] and all(check_inside(d, root) for d in dots)
    # the watch flow starts one run per file: the name alone must tell them apart
    one_run = [common.image_output_dirs([f"/in/x{s}"], root, "/in")[0] for s in (".tif", ".tiff", ".TIF")]
    assert one_run == [root / "x", root / "x_tiff", root / "x"]
    assert len(set(common.image_output_dirs(["/in/x.tif", "/in/x.tiff", "/in/x.vrt"], root))) == 3


def test_base_url_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(common.BASE_URL_ENV, raising=False)
    assert common.base_url() == "http://127.0.0.1:8000/"
    monkeypatch.setenv(common.BASE_URL_ENV, "https://files.example/out")
    assert common.base_url() == "https://files.example/out/"
    assert common.base_url("http://x:1/") == "http://x:1/"


def test_remote_detection() -> None:
    assert common.is_remote("s3://b/k.tif") and common.is_remote("memory://x")
    assert not common.is_remote("/data/x.tif") and not common.is_remote("file:///data/x.tif")
    assert common.local_path("file:///data/x.tif") == "/data/x.tif"


def test_cache_key_depends_on_bytes_params_model_and_folder(tmp_path: Path) -> None:
    base = _config()
    key = common.segment_cache_key("abc", base, tmp_path)
    assert key == common.segment_cache_key("abc", base.merged({"batch_size": 9}), tmp_path)  # runtime-only
    assert key != common.segment_cache_key("abd", base, tmp_path)
    assert key != common.segment_cache_key("abc", base.merged({"halo": 16}), tmp_path)
    assert key != common.segment_cache_key("abc", base.merged({"model": "facebook/sam-vit-base"}), tmp_path)
    assert key != common.segment_cache_key("abc", base, tmp_path / "other")
    model_dir = tmp_path / "ckpt"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    first = common.model_fingerprint(str(model_dir))
    (model_dir / "model.safetensors").write_bytes(b"1")
    assert common.model_fingerprint(str(model_dir)) != first


def test_artifact_keys_are_lowercase_slugs() -> None:
    assert common.artifact_key("segment", "LC08 Scene_2020.tif") == "segment-lc08-scene-2020-tif"
    assert common.artifact_key("segment", "...") == "segment-image"
    assert len(common.artifact_key("segment", "x" * 300)) == 100


def test_how_to_open_a_local_root_or_a_store() -> None:
    assert common.how_to_open("/data/out") == "serve them with `samgeo-pipeline serve /data/out`"
    s3 = common.how_to_open("s3://fleet/out/")
    assert "`rio info /vsis3/fleet/out/IMAGE/mask.tif`" in s3 and "output_base_url" in s3
    assert "with the store's own tools" in common.how_to_open("memory://x/out")


def test_the_run_log_never_shows_credentials(caplog: pytest.LogCaptureFixture) -> None:
    log = common.RedactedLog(logging.getLogger("samgeo-test-redacted"))
    with caplog.at_level(logging.INFO, logger="samgeo-test-redacted"):
        log.info("fetching %s", "https://user:hunter2@h.example/x.tif?X-Amz-Signature=abc123")
        log.debug("not shown")
    assert "hunter2" not in caplog.text and "abc123" not in caplog.text
    assert "fetching https://" in caplog.text and "h.example/x.tif" in caplog.text and "not shown" not in caplog.text
