"""A flow's inputs (:mod:`flows.inputs`): output folders, remote detection, input expansion, staged
copies of remote inputs; and issue 21 through the segment flow: its inputs are untouchable (row 1),
its outputs are not taken as inputs (row 7), and the staging folders of crashed runs are removed (row 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows import segment as seg
from flows.inputs import (
    RemoteInputError,
    RemoteReadError,
    StagedCopyError,
    check_copy,
    expand_specs,
    fetch_to,
    image_output_dirs,
    is_remote,
    local_path,
    remote_errors,
    remove_staged,
)
from flows.links import base_url, output_links
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import InputError
from tests.scenes import inputs_inside_outputs

OPTIONS = {"model": "none", "tile_size": 256, "halo": 32}
REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict[str, tuple[bool, bytes, int]]:
    """``relative path -> (is_dir, bytes, mtime_ns)`` of everything under ``root``."""
    return {
        str(p.relative_to(root)): (p.is_dir(), b"" if p.is_dir() else p.read_bytes(), p.lstat().st_mtime_ns)
        for p in [root, *root.rglob("*")]
    }


@pytest.mark.usefixtures("prefect_harness")
class TestFlowInputs:
    def test_an_output_never_replaces_or_deletes_its_input(self, tmp_path: Path) -> None:
        """Row 1 through the flow: the same refusal (the same library check), before anything is written.

        ``R/a/mask.tif`` lies in the folder of the input ``a.tif``, whose mask would replace it."""
        root = tmp_path / "R"
        scene = write_demo_scene(tmp_path / "a.tif", 100, 120)
        inputs = inputs_inside_outputs(root, scene, first="a")
        before = snapshot(root)
        state = seg.segment_flow([str(scene), *map(str, inputs)], str(root), OPTIONS, return_state=True)
        assert state.is_failed() and "lies in the output folder" in state.message
        assert snapshot(root) == before

    def test_out_inside_the_input_folder_and_stale_staging(self, tmp_path: Path) -> None:
        """Row 7: the second run takes its own outputs as inputs; row 6: a crashed run's staged copy stays."""
        d4 = tmp_path / "d4"
        write_demo_scene(d4 / "a.tif", 200, 300)
        out = d4 / "out"
        staging = out / ".samgeo-staging"
        code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; import fsspec\n"
                "fsspec.filesystem('memory').pipe('/s/x.tif', b'bytes')\n"
                "from flows.inputs import fetch_to; print(fetch_to('memory://s/x.tif', Path(sys.argv[2])))\n"
                "import os; os._exit(0)")  # dies without removing its copy, as a crash does
        dead = Path(subprocess.run([sys.executable, "-c", code, str(REPO), str(staging)], check=True,
                                   capture_output=True, text=True, timeout=120).stdout.strip())  # fmt: skip
        assert dead.is_file()
        first = seg.segment_flow([str(d4)], str(out), {**OPTIONS, "probability": True})
        assert [r["status"] for r in first] == ["done"] and not dead.parent.exists()
        second = seg.segment_flow([str(d4)], str(out), {**OPTIONS, "probability": True})
        assert [Path(r["input"]).name for r in second] == ["a.tif"] and second[0]["status"] in ("skipped", "cached")
        assert sorted(p.name for p in out.iterdir()) == [".samgeo-catalog.lock", ".samgeo-staging", "a", "catalog.json"]


def test_output_dirs_and_links(tmp_path: Path) -> None:
    root = tmp_path / "out"
    dirs = image_output_dirs(["/in/a/x.tif", "/in/b/x.tif", "/in/y.tif"], root)
    assert dirs[2] == root / "y" and dirs[0] != dirs[1] and dirs[0].name.startswith("x_")
    assert image_output_dirs(["/in/a/x.tif", "s3://bkt/in/b/x.tif"], root, "/in") == [
        root / "a" / "x", root / "x"]
    assert image_output_dirs(["s3://bkt/in/b/x.tif"], root, "s3://bkt/in") == [root / "b" / "x"]
    assert image_output_dirs(["memory:///w/in/b/x.tif"], root, "memory://w/in") == [root / "b" / "x"]
    (root / "a b").mkdir(parents=True)
    (root / "a b" / "mask.tif").write_bytes(b"x")
    links = output_links(root / "a b", root, base_url("https://h.example/data"))
    assert links == {"mask.tif": "https://h.example/data/a%20b/mask.tif"}


def test_output_dirs_cannot_escape_and_suffixes_differ(tmp_path: Path) -> None:
    """Issue 11: ``..`` in a URL wrote outside the output root; ``x.tif`` and ``x.tiff`` shared a folder."""
    from samgeo_pipeline.io.paths import check_inside

    root = tmp_path / "out"
    escaping = image_output_dirs(["memory://incoming/../../../esc/y.tif"], root, "memory://incoming")
    assert escaping == [root / "y"]
    dots = image_output_dirs(["/in/...tif", "/in/..tif", "/in/a/../../../y.tif"], root, "/in")
    assert dots == [root / "__", root / "_", root / "y"] and all(check_inside(d, root) for d in dots)
    # the watch flow starts one run per file: the name alone must tell them apart
    one_run = [image_output_dirs([f"/in/x{s}"], root, "/in")[0] for s in (".tif", ".tiff", ".TIF")]
    assert one_run == [root / "x", root / "x_tiff", root / "x"]
    assert len(set(image_output_dirs(["/in/x.tif", "/in/x.tiff", "/in/x.vrt"], root))) == 3


def test_remote_detection() -> None:
    assert is_remote("s3://b/k.tif") and is_remote("memory://x")
    assert not is_remote("/data/x.tif") and not is_remote("file:///data/x.tif")
    assert local_path("file:///data/x.tif") == "/data/x.tif"


def test_a_staged_copy_is_the_only_thing_removed(tmp_path: Path) -> None:
    """Issue 11: the clean-up removed the folder a reused manifest named (the user's own files)."""
    import fsspec

    fsspec.filesystem("memory").pipe("/issue11-stage/x.tif", b"raster bytes")
    staging = tmp_path / "out" / ".samgeo-staging"
    first = fetch_to("memory://issue11-stage/x.tif", staging)
    second = fetch_to("memory://issue11-stage/x.tif", staging)
    assert first.read_bytes() == b"raster bytes" and first.parent != second.parent  # one folder per fetch
    victim = tmp_path / "victim" / "in"
    victim.mkdir(parents=True)
    (victim / "x.tif").write_bytes(b"user's")
    (victim / "KEEP_ME.txt").write_text("keep")
    remove_staged(victim / "x.tif", staging)  # a path from a manifest or a summary: ignored
    assert sorted(p.name for p in victim.iterdir()) == ["KEEP_ME.txt", "x.tif"]
    remove_staged(first, staging)
    assert not first.parent.exists() and second.is_file()
    with pytest.raises(InputError, match="missing.tif: not found"):  # one line, not retried (issue 21)
        fetch_to("memory://issue11-stage/missing.tif", staging)
    assert sorted(p.name for p in staging.iterdir()) == [second.parent.name]  # a failed fetch cleans up


def test_a_staged_copy_is_checked_against_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9: a copy cut short (or an object replaced while read) never gets its final name."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    fsspec.filesystem("memory").pipe("/issue9-stage/x.tif", b"raster bytes")
    staging = tmp_path / ".samgeo-staging"
    real_get = MemoryFileSystem.get_file

    def cut_short(self, rpath, lpath, *args, **kwargs):
        real_get(self, rpath, lpath, *args, **kwargs)
        with open(lpath, "r+b") as fh:
            fh.truncate(5)

    monkeypatch.setattr(MemoryFileSystem, "get_file", cut_short)
    with pytest.raises(StagedCopyError, match="5 bytes, the store says 12"):
        fetch_to("memory://issue9-stage/x.tif", staging)
    assert list(staging.iterdir()) == []  # nothing staged is left
    monkeypatch.setattr(MemoryFileSystem, "get_file", real_get)
    assert fetch_to("memory://issue9-stage/x.tif", staging).read_bytes() == b"raster bytes"
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

    assert [Path(p).name for p in expand_specs([str(two_scenes)])] == ["alpha.tif", "beta.tif"]
    fs = fsspec.filesystem("memory")
    fs.pipe("/expand/a.tif", b"1")
    fs.pipe("/expand/notes.txt", b"2")
    assert expand_specs(["memory://expand/*.tif"]) == ["memory:///expand/a.tif"]
    assert expand_specs(["memory://expand"]) == ["memory:///expand/a.tif"]
    with pytest.raises(InputError, match="matches no raster"):
        expand_specs(["memory://expand/*.png"])


URL = "https://user:hunter2@h.example/in/x.tif?X-Amz-Signature=abc123"


@pytest.mark.parametrize(
    ("raised", "error", "message"),
    [
        (FileNotFoundError("x"), RemoteInputError, r"h\.example/in/x\.tif.*: not found, or the server cannot be reached"),
        (PermissionError("x"), RemoteInputError, r": access denied; check the credentials$"),
        (ValueError(f"bad URL {URL}\nmore"), RemoteInputError, r": ValueError: bad URL https://.*h\.example"),
        (ConnectionResetError(f"reset by {URL}"), RemoteReadError, r": ConnectionResetError: reset by https://"),
    ],
)  # fmt: skip
def test_remote_errors_are_one_line_without_credentials(raised: Exception, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        with remote_errors(URL):
            raise raised
    text = str(caught.value)
    assert "hunter2" not in text and "abc123" not in text and "\n" not in text
    with pytest.raises(InputError, match="^already ours$"):  # the pipeline's own errors pass through as they are
        with remote_errors(URL):
            raise InputError("already ours")
