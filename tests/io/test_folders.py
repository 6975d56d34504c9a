"""An image's output folder (:mod:`samgeo_pipeline.io.folders`): inputs kept out of it, its lock, the leftovers
of killed runs. The CLI and flow runs over these are in ``tests/test_inputs_untouchable.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from samgeo_pipeline.errors import UnsafePathError
from samgeo_pipeline.io.folders import check_inputs_outside


class TestLeftoversOfKilledRuns:
    def test_remove_partials_removes_only_temporary_files(self, tmp_path: Path) -> None:
        from samgeo_pipeline.io.folders import remove_partials

        for name in (".mask.tif.partial-abc.tif", ".water.work-1.tif", "mask.tif", ".samgeo-lock", ".notes",
                     "x.partial-1.tif"):
            (tmp_path / name).write_bytes(b"1")
        (tmp_path / ".dir.partial-1").mkdir()
        removed = remove_partials(tmp_path)
        assert sorted(p.name for p in removed) == [".mask.tif.partial-abc.tif", ".water.work-1.tif"]
        assert sorted(p.name for p in tmp_path.iterdir()) == [".dir.partial-1", ".notes", ".samgeo-lock",
                                                               "mask.tif", "x.partial-1.tif"]
        assert remove_partials(tmp_path / "missing") == []

    def test_output_lock_is_exclusive_and_freed_by_kill_9(self, tmp_path: Path) -> None:
        import fcntl
        import signal
        import subprocess
        import sys

        from samgeo_pipeline.io.folders import LOCK_NAME, output_lock

        code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from samgeo_pipeline.io.folders import output_lock\n"
                "with output_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)")
        repo = str(Path(__file__).resolve().parents[2])
        holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), repo], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            with open(tmp_path / LOCK_NAME, "a+b") as fh, pytest.raises(BlockingIOError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
        with output_lock(tmp_path):  # the kernel released the dead holder's lock
            pass


def test_inputs_inside_an_output_folder_or_behind_an_output_name_are_refused(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    scene = inputs / "scene.tif"
    scene.write_bytes(b"raster")
    check_inputs_outside([scene], [inputs / "out" / "scene"])  # an output folder inside the input's folder is fine
    with pytest.raises(UnsafePathError, match=r"scene\.tif: lies in the output folder .*in, where a run replaces .*--out"):
        check_inputs_outside([scene], [inputs])
    link = tmp_path / "link"
    link.symlink_to(inputs)
    with pytest.raises(UnsafePathError, match="lies in the output folder"):
        check_inputs_outside([scene], [link])  # compared resolved
    out = tmp_path / "out" / "scene"
    out.mkdir(parents=True)
    (out / "quicklook.png").symlink_to(scene)
    with pytest.raises(UnsafePathError, match=r"quicklook\.png leads to this input and would be replaced"):
        check_inputs_outside([scene], [out])
