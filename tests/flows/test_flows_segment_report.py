"""What a segment run reports, as plain functions: failure reasons, the uncertain warning, artifact keys, the store
URLs of an image's outputs and the storage options of a remote output root."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flows import segment_report as report
from samgeo_pipeline.errors import ConfigError, RasterReadError


def test_failure_reason_is_one_line_naming_the_input() -> None:
    assert report.failure_reason("a.tif", RasterReadError("a.tif: truncated\nGDAL says more")) == "a.tif: truncated"
    assert report.failure_reason("a.tif", ConfigError("tile_size: must be >= 64")) == "tile_size: must be >= 64"  # as said
    assert report.failure_reason("a.tif", KeyError("band")) == "a.tif: KeyError: 'band'"
    assert report.failure_reason("a.tif", OSError("a.tif: disk full")) == "a.tif: disk full"  # named once


def test_warn_uncertain_names_each_abstaining_image_once(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test-segment-report")
    summaries = [{"input": "a.tif"}, {"input": "b.tif", "uncertain": "water and land overlap"}, {"input": "c.tif"}]
    with caplog.at_level(logging.WARNING, logger=logger.name):
        report.warn_uncertain(summaries, logger)
        report.warn_uncertain([{"input": "a.tif"}], logger)  # none uncertain: nothing said
    [record] = caplog.records
    assert record.getMessage().startswith("1 of 3 image(s) uncertain")
    assert "- b.tif: water and land overlap" in record.getMessage() and "a.tif" not in record.getMessage()


def test_remote_dir_of(tmp_path: Path) -> None:
    remote = {"root": "s3://bucket/out/", "local_root": tmp_path}
    assert report.remote_dir_of(tmp_path / "scene" / "2021", remote) == "s3://bucket/out/scene/2021"
    assert report.remote_dir_of(tmp_path / "scene", None) is None


def test_publish_names_the_store_without_credentials() -> None:
    summary = {"input": "a.tif", "out_dir": "/tmp/x/a", "outputs": ["/tmp/x/a/mask.tif", "/tmp/x/a/manifest.json"]}
    assert report.publish(summary, None) is summary  # a local root: unchanged
    published = report.publish(summary, "s3://KEY:SECRET@bucket/out/a")
    assert published["outputs"] == ["s3://***@bucket/out/a/mask.tif", "s3://***@bucket/out/a/manifest.json"]
    assert published["out_dir"] == "s3://***@bucket/out/a" and "SECRET" not in str(published)
    assert summary["out_dir"] == "/tmp/x/a"  # the local summary is not changed


def test_storage_options_without_a_block_are_a_copy() -> None:
    options = {"anon": False}
    copied = report.storage_options(options, None)
    assert copied == options and copied is not options
    assert report.storage_options(None, None) == {}


def test_storage_options_from_a_secret_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.blocks.system import Secret

    class Stored:
        def __init__(self, value: object) -> None:
            self.value = value

        def get(self) -> object:
            return self.value

    monkeypatch.setattr(Secret, "load", lambda name: Stored({"key": "k", "anon": True}))
    assert report.storage_options({"anon": False, "region": "x"}, "creds") == {"anon": True, "region": "x", "key": "k"}
    monkeypatch.setattr(Secret, "load", lambda name: Stored("just a string"))
    with pytest.raises(ConfigError, match=r"'creds': holds no JSON object of storage options; create it with Secret"):
        report.storage_options(None, "creds")


def test_a_missing_secret_block_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.blocks.system import Secret

    def missing(name: str) -> None:
        raise ValueError(f"Unable to find block document named {name} for block type secret")

    monkeypatch.setattr(Secret, "load", missing)
    with pytest.raises(ConfigError, match=r"^output_credentials_block 'creds': no such Secret block; create it with "
                                          r"Secret\(value=.*\)\.save\('creds'\) .*leave output_credentials_block out"):
        report.storage_options({"anon": False}, "creds")


def test_artifact_keys_are_lowercase_slugs() -> None:
    assert report.artifact_key("segment", "LC08 Scene_2020.tif") == "segment-lc08-scene-2020-tif"
    assert report.artifact_key("segment", "...") == "segment-image"
    assert len(report.artifact_key("segment", "x" * 300)) == 100
