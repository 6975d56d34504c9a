"""Issue 21, rows 1, 6 and 7: an output never replaces or deletes an input, outputs are never taken
as inputs, and the temporary files of a killed run are removed by the next run of its folder.

Each test is the accident it prevents, through the CLI (``--model none``) where it can be.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from samgeo_pipeline.cli import main
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import UnsafePathError
from samgeo_pipeline.io.folders import LOCK_NAME, check_inputs_outside
from tests.scenes import inputs_inside_outputs, leftovers

FAST = ["--model", "none", "--no-progress"]
REPO = Path(__file__).resolve().parents[1]
#: Generous bound for a child process to get somewhere (liveness, not timing).
WAIT_S = 120


def segment(*args: object) -> int:
    return main(["segment", *map(str, args), *FAST])


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def snapshot(root: Path) -> dict[str, tuple[bool, bytes, int]]:
    """``relative path -> (is_dir, bytes, mtime_ns)`` of everything under ``root``."""
    return {
        str(p.relative_to(root)): (p.is_dir(), b"" if p.is_dir() else p.read_bytes(), p.lstat().st_mtime_ns)
        for p in [root, *root.rglob("*")]
    }


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 100 x 120 demo scene (read only)."""
    return write_demo_scene(tmp_path_factory.mktemp("scene") / "scene.tif", 100, 120)


class TestInputsAreUntouchable:
    @pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
    def test_an_output_never_replaces_or_deletes_its_input(self, scene: Path, tmp_path: Path, capsys,
                                                           overwrite: list[str]) -> None:  # fmt: skip
        """Row 1: ``R/mask/mask.tif`` was replaced by the output mask, ``R/probability/probability.tif``
        deleted, and the user's manifest.json / quicklook.png beside ``R/scene/scene.tif`` overwritten."""
        root = tmp_path / "R"
        inputs = inputs_inside_outputs(root, scene, first="mask")
        before = snapshot(root)
        assert segment(*inputs, "--out", root, *overwrite) == 1
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "lies in the output folder" in lines[0] and "--out" in lines[0]
        assert snapshot(root) == before  # nothing replaced, deleted or added (not even a lock file)

    def test_an_input_in_another_images_folder_is_refused(self, scene: Path, tmp_path: Path, capsys) -> None:
        """``a.tif`` and ``out/a/mask.tif``: the folder of ``a`` holds the input ``mask.tif``, which
        ``a``'s mask would replace (each input alone is outside its own folder, ``out/mask/``)."""
        out = tmp_path / "out"
        (out / "a").mkdir(parents=True)
        other = shutil.copy(scene, out / "a" / "mask.tif")
        a = shutil.copy(scene, tmp_path / "a.tif")
        before = snapshot(out)
        assert segment(a, other, "--out", out) == 1
        assert "lies in the output folder" in capsys.readouterr().err
        assert snapshot(out) == before

    def test_an_output_name_that_leads_to_an_input_is_refused(self, scene: Path, tmp_path: Path) -> None:
        (tmp_path / "out" / "scene").mkdir(parents=True)
        (tmp_path / "out" / "scene" / "probability.tif").symlink_to(scene)
        with pytest.raises(UnsafePathError, match="probability.tif leads to this input"):
            check_inputs_outside([scene], [tmp_path / "out" / "scene"])
        check_inputs_outside([scene], [tmp_path / "out" / "other"])  # an output folder beside the input: fine

    def test_a_users_own_manifest_and_quicklook_are_kept(self, scene: Path, tmp_path: Path, capsys) -> None:
        """An input elsewhere, its output folder already holding the user's files: not overwritten
        without ``--overwrite``."""
        out = tmp_path / "out"
        mine = out / "scene"
        mine.mkdir(parents=True)
        (mine / "manifest.json").write_text('{"my": "notes"}')
        (mine / "quicklook.png").write_bytes(b"my picture")
        before = snapshot(out)
        assert segment(scene, "--out", out) == 1
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "not a manifest of samgeo-pipeline" in lines[0] and "--overwrite" in lines[0]
        assert snapshot(out) == before
        (mine / "manifest.json").unlink()  # a quicklook.png alone, in a folder the pipeline never wrote in
        before = snapshot(out)
        assert segment(scene, "--out", out) == 1
        assert "did not write (quicklook.png)" in capsys.readouterr().err
        assert snapshot(out) == before
        assert segment(scene, "--out", out, "--overwrite") == 0  # asked for: replaced
        assert (mine / "quicklook.png").read_bytes() != b"my picture"


class TestOutputsAreNotInputs:
    def test_out_inside_the_input_folder_twice(self, tmp_path: Path, capsys) -> None:
        """Row 7: ``segment d4 --out d4/out`` run twice took its own mask.tif / probability.tif as inputs."""
        d4 = tmp_path / "d4"
        write_demo_scene(d4 / "a.tif", 100, 120)
        assert segment(d4, "--out", d4 / "out", "--probability") == 0
        assert (d4 / "out" / "a" / "probability.tif").is_file()
        capsys.readouterr()
        assert segment(d4, "--out", d4 / "out", "--probability") == 0
        assert "skipped" in capsys.readouterr().err
        assert sorted(p.name for p in (d4 / "out").iterdir()) == [".samgeo-catalog.lock", "a", "catalog.json"]
        assert segment(str(d4 / "**" / "*.tif"), "--out", d4 / "out", "--probability") == 0  # a glob too
        assert sorted(p.name for p in (d4 / "out").iterdir()) == [".samgeo-catalog.lock", "a", "catalog.json"]

    def test_a_search_that_finds_only_outputs_says_so(self, tmp_path: Path, capsys) -> None:
        d4 = tmp_path / "d4"
        write_demo_scene(d4 / "a.tif", 100, 120)
        assert segment(d4, "--out", d4 / "out") == 0
        capsys.readouterr()
        assert segment(d4 / "out", "--out", d4 / "out") == 1
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "outside the output root" in lines[0]


_KILLED_RUN = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import samgeo_pipeline.run.sink as sink
from samgeo_pipeline.cli import main

real_write = sink.TileSink.write

def write_then_hang(self, prepared, sam):
    real_write(self, prepared, sam)
    print("writing", flush=True)
    time.sleep(600)  # killed here, work files open

sink.TileSink.write = write_then_hang
main(["segment", sys.argv[2], "--out", sys.argv[3], "--model", "none", "--no-progress", "--probability"])
"""


class TestLeftoversOfKilledRuns:
    def test_the_next_cli_run_removes_what_a_kill_9_left(self, scene: Path, tmp_path: Path, capsys) -> None:
        """Row 6: the CLI never removed the ``.mask.tif.work-*`` / ``.probability.tif.work-*`` files of
        a killed run (nor ``.partial-*.ovr.tmp``); only the pipeline's own names in that folder go."""
        out = tmp_path / "out"
        run = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(REPO), str(scene), str(out)],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert run.stdout.readline().strip() == "writing"
        finally:
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=WAIT_S)
        folder = out / "scene"
        killed = sorted(p.name for p in leftovers(folder))
        assert any(n.startswith(".mask.tif.work-") for n in killed), killed
        assert any(n.startswith(".probability.tif.work-") for n in killed), killed
        (folder / ".mask.tif.partial-abc123.tif.ovr.tmp").write_bytes(b"half an overview")  # a kill during the COG
        outside = tmp_path / "outside.tif"
        outside.write_bytes(b"not the pipeline's")
        (folder / ".water.gpkg.work-link.tif").symlink_to(outside)  # a link: never followed, never removed
        (folder / "notes.partial-1.txt").write_text("the user's")  # not hidden: not a pipeline name
        (folder / ".cache.work-1").mkdir()  # a folder: left alone
        assert segment(scene, "--out", out, "--probability") == 0
        err = capsys.readouterr().err
        assert "left by a run that died" in err
        assert sorted(p.name for p in folder.iterdir()) == [
            ".cache.work-1", LOCK_NAME, ".water.gpkg.work-link.tif", "item.json", "manifest.json", "mask.tif",
            "notes.partial-1.txt",
            "probability.tif", "quicklook.png", "water.gpkg"]  # fmt: skip
        assert outside.read_bytes() == b"not the pipeline's"


class TestStagingFolders:
    def test_stale_staging_folders_go_live_and_foreign_ones_stay(self, tmp_path: Path) -> None:
        """Row 6 (flow): a crashed run left ``.samgeo-staging/<hash>-<rand>/`` copies, one more per crash."""
        import fsspec

        from flows.inputs import fetch_to, remove_staged, remove_stale_staging

        fsspec.filesystem("memory").pipe("/issue21-stage/x.tif", b"raster bytes")
        staging = tmp_path / "out" / ".samgeo-staging"
        code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; import fsspec\n"
                "fsspec.filesystem('memory').pipe('/s/x.tif', b'bytes')\n"
                "from flows.inputs import fetch_to; print(fetch_to('memory://s/x.tif', Path(sys.argv[2])))\n"
                "import os; os._exit(0)")  # dies without removing its copy, as a crash does
        dead = Path(subprocess.run([sys.executable, "-c", code, str(REPO), str(staging)], check=True,
                                   capture_output=True, text=True, timeout=WAIT_S).stdout.strip())  # fmt: skip
        assert dead.is_file() and dead.parent.parent == staging
        live = fetch_to("memory://issue21-stage/x.tif", staging)  # this process's: held
        foreign = staging / "0123456789abcdef-abcdefgh"  # a name like ours, without the lock: not made here
        foreign.mkdir()
        (staging / "KEEP_ME").mkdir()
        assert remove_stale_staging(staging) == [dead.parent]
        assert not dead.parent.exists() and live.is_file()
        assert sorted(p.name for p in staging.iterdir()) == sorted([live.parent.name, foreign.name, "KEEP_ME"])
        remove_staged(live, staging)
        assert remove_stale_staging(staging) == [] and sorted(p.name for p in staging.iterdir()) == [
            "0123456789abcdef-abcdefgh", "KEEP_ME"]  # fmt: skip


def test_a_lock_file_alone_is_no_output(scene: Path, tmp_path: Path) -> None:
    """The lock file marks a folder the pipeline wrote in: a run stopped after it is redone without
    ``--overwrite`` (its mask.tif, without a manifest, is the pipeline's own)."""
    out = tmp_path / "out"
    assert segment(scene, "--out", out) == 0
    (out / "scene" / "manifest.json").unlink()  # as a run killed before its manifest leaves it
    stamp = (out / "scene" / "mask.tif").stat().st_mtime_ns
    assert segment(scene, "--out", out) == 0
    assert (out / "scene" / "manifest.json").is_file() and (out / "scene" / "mask.tif").stat().st_mtime_ns != stamp
    assert os.path.exists(out / "scene" / LOCK_NAME)
