"""Issue 21 through the segment flow: its inputs are untouchable (row 1), its outputs are not taken
as inputs (row 7), and the staging folders of crashed runs are removed (row 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows import segment as seg
from samgeo_pipeline.demo import write_demo_scene
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
                "from flows.stages import fetch_to; print(fetch_to('memory://s/x.tif', Path(sys.argv[2])))\n"
                "import os; os._exit(0)")  # dies without removing its copy, as a crash does
        dead = Path(subprocess.run([sys.executable, "-c", code, str(REPO), str(staging)], check=True,
                                   capture_output=True, text=True, timeout=120).stdout.strip())  # fmt: skip
        assert dead.is_file()
        first = seg.segment_flow([str(d4)], str(out), {**OPTIONS, "probability": True})
        assert [r["status"] for r in first] == ["done"] and not dead.parent.exists()
        second = seg.segment_flow([str(d4)], str(out), {**OPTIONS, "probability": True})
        assert [Path(r["input"]).name for r in second] == ["a.tif"] and second[0]["status"] in ("skipped", "cached")
        assert sorted(p.name for p in out.iterdir()) == [".samgeo-catalog.lock", ".samgeo-staging", "a", "catalog.json"]
