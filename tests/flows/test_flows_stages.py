"""The segment flow's plain stages (:mod:`flows.stages`): input expansion, staged copies of remote inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import stages
from samgeo_pipeline.errors import InputError
from samgeo_pipeline.outputs.manifest import Manifest


def test_a_staged_copy_is_the_only_thing_removed(tmp_path: Path) -> None:
    """Issue 11: the clean-up removed the folder a reused manifest named (the user's own files)."""
    import fsspec

    fsspec.filesystem("memory").pipe("/issue11-stage/x.tif", b"raster bytes")
    staging = tmp_path / "out" / ".samgeo-staging"
    first = stages.fetch_to("memory://issue11-stage/x.tif", staging)
    second = stages.fetch_to("memory://issue11-stage/x.tif", staging)
    assert first.read_bytes() == b"raster bytes" and first.parent != second.parent  # one folder per fetch
    victim = tmp_path / "victim" / "in"
    victim.mkdir(parents=True)
    (victim / "x.tif").write_bytes(b"user's")
    (victim / "KEEP_ME.txt").write_text("keep")
    from flows.stages import remove_staged

    remove_staged(victim / "x.tif", staging)  # a path from a manifest or a summary: ignored
    assert sorted(p.name for p in victim.iterdir()) == ["KEEP_ME.txt", "x.tif"]
    remove_staged(first, staging)
    assert not first.parent.exists() and second.is_file()
    with pytest.raises(InputError, match="missing.tif: not found"):  # one line, not retried (issue 21)
        stages.fetch_to("memory://issue11-stage/missing.tif", staging)
    assert sorted(p.name for p in staging.iterdir()) == [second.parent.name]  # a failed fetch cleans up


def test_a_staged_copy_is_checked_against_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9: a copy cut short (or an object replaced while read) never gets its final name."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from flows.stages import StagedCopyError, check_copy

    fsspec.filesystem("memory").pipe("/issue9-stage/x.tif", b"raster bytes")
    staging = tmp_path / ".samgeo-staging"
    real_get = MemoryFileSystem.get_file

    def cut_short(self, rpath, lpath, *args, **kwargs):
        real_get(self, rpath, lpath, *args, **kwargs)
        with open(lpath, "r+b") as fh:
            fh.truncate(5)

    monkeypatch.setattr(MemoryFileSystem, "get_file", cut_short)
    with pytest.raises(StagedCopyError, match="5 bytes, the store says 12"):
        stages.fetch_to("memory://issue9-stage/x.tif", staging)
    assert list(staging.iterdir()) == []  # nothing staged is left
    monkeypatch.setattr(MemoryFileSystem, "get_file", real_get)
    assert stages.fetch_to("memory://issue9-stage/x.tif", staging).read_bytes() == b"raster bytes"
    copy = tmp_path / "copy.tif"
    copy.write_bytes(b"raster bytes")
    import hashlib

    good = hashlib.md5(b"raster bytes").hexdigest()
    check_copy("s3://b/x.tif", copy, {"size": 12, "ETag": f'"{good}"'})
    check_copy("s3://b/x.tif", copy, {"size": 12, "ETag": '"abc-2"'})  # multipart ETag: size only
    with pytest.raises(StagedCopyError, match="MD5"):
        check_copy("s3://b/x.tif", copy, {"size": 12, "ETag": '"' + "0" * 32 + '"'})


def test_expand_specs_local_and_fsspec(two_scenes: Path) -> None:
    import fsspec

    assert [Path(p).name for p in stages.expand_specs([str(two_scenes)])] == ["alpha.tif", "beta.tif"]
    fs = fsspec.filesystem("memory")
    fs.pipe("/expand/a.tif", b"1")
    fs.pipe("/expand/notes.txt", b"2")
    assert stages.expand_specs(["memory://expand/*.tif"]) == ["memory:///expand/a.tif"]
    assert stages.expand_specs(["memory://expand"]) == ["memory:///expand/a.tif"]
    with pytest.raises(InputError, match="matches no raster"):
        stages.expand_specs(["memory://expand/*.png"])


URL = "https://user:hunter2@h.example/in/x.tif?X-Amz-Signature=abc123"


@pytest.mark.parametrize(
    ("raised", "error", "message"),
    [
        (FileNotFoundError("x"), stages.RemoteInputError, r"h\.example/in/x\.tif.*: not found, or the server cannot be reached"),
        (PermissionError("x"), stages.RemoteInputError, r": access denied; check the credentials$"),
        (ValueError(f"bad URL {URL}\nmore"), stages.RemoteInputError, r": ValueError: bad URL https://.*h\.example"),
        (ConnectionResetError(f"reset by {URL}"), stages.RemoteReadError, r": ConnectionResetError: reset by https://"),
    ],
)  # fmt: skip
def test_remote_errors_are_one_line_without_credentials(raised: Exception, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        with stages.remote_errors(URL):
            raise raised
    text = str(caught.value)
    assert "hunter2" not in text and "abc123" not in text and "\n" not in text
    with pytest.raises(InputError, match="^already ours$"):  # the pipeline's own errors pass through as they are
        with stages.remote_errors(URL):
            raise InputError("already ours")


def test_summary_of_a_manifest(tmp_path: Path) -> None:
    data = {
        "input": {"path": "/staged/x.tif", "source": "https://u:secret@h.example/x.tif", "sha256": "ab"},
        "tiles": {"total": 4, "sam": 2, "coarse_only": 1, "skipped": 1, "failed": 0, "other": 9},
        "water": {"area_m2": 1.5e6, "fraction_of_valid": 0.25, "polygons": 3},
        "seconds": {"total": 12.5}, "model": {"id": "none"}, "params_hash": "p1",
        "uncertain": {"reason": "poorly separated"}, "outputs": ["mask.tif"], "status": "done",
    }  # fmt: skip
    manifest = Manifest.from_dict(data)
    summary = stages.summarize(manifest, "done", tmp_path)
    assert summary["input"] == "https://***@h.example/x.tif" and summary["uncertain"] == "poorly separated"
    assert summary["tiles"] == {"total": 4, "sam": 2, "coarse_only": 1, "skipped": 1, "failed": 0}
    assert summary["outputs"] == [str(tmp_path / "mask.tif"), str(tmp_path / "manifest.json")]
    assert stages.summarize(manifest, "skipped", tmp_path, source="/here/x.tif")["input"] == "/here/x.tif"
    del data["uncertain"]
    assert stages.summarize(Manifest.from_dict(data), "done", tmp_path)["uncertain"] is None
