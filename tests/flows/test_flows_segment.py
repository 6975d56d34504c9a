"""The segment flow: whole runs on the session's temporary API (its tasks: test_flows_segment_tasks.py)."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest

from flows import segment as seg
from flows import segment_steps
from flows import segment_tasks as tasks
from flows.links import BASE_URL_ENV
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene

OPTIONS = {"model": "none", "tile_size": 256, "halo": 32}


def _config(**changes) -> SegmentConfig:
    return segment_steps.build_config({**OPTIONS, **changes})


def test_library_and_helpers_import_without_prefect() -> None:
    import subprocess
    import sys

    code = ("import sys, samgeo_pipeline.cli, samgeo_pipeline.run.image, samgeo_pipeline.run.batch, "
            "samgeo_pipeline.serve.server, flows.inputs, flows.links, flows.segment_steps; "
            "sys.exit('prefect' in sys.modules)")
    repo = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo).returncode == 0


@pytest.mark.usefixtures("prefect_harness")
class TestSegmentFlow:
    def _artifacts(self, flow_run_id):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        with get_client(sync_client=True) as client:
            return client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )

    def test_run_fail_one_cache_and_artifacts(self, two_scenes: Path, tmp_path: Path, monkeypatch) -> None:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        bad_dir = tmp_path / "bad"
        bad_dir.mkdir()
        (bad_dir / "broken.tif").write_bytes(b"II*\x00garbage")
        out = tmp_path / "out"
        loads = []
        import samgeo_pipeline.run.batch as runner

        real_load = runner.load_predictor
        monkeypatch.setattr(runner, "load_predictor", lambda c: loads.append(c.model) or real_load(c))
        monkeypatch.delenv(BASE_URL_ENV, raising=False)

        state = seg.segment_flow([str(two_scenes), str(bad_dir / "broken.tif")], str(out), OPTIONS,
                                 return_state=True)
        assert state.is_failed()
        assert "1 of 3 image(s) failed" in state.message and "broken.tif" in state.message
        assert loads == ["none"]  # one model load per flow run, shared by both images
        assert len(segment_steps.PREDICTORS) == 0  # released at the end of the run
        for name in ("alpha", "beta"):
            assert {p.name for p in (out / name).iterdir()} >= {"mask.tif", "water.gpkg", "quicklook.png", "manifest.json"}
        with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
            client.read_global_concurrency_limit_by_name("gpu")  # no server-wide limit unless asked

        artifacts = self._artifacts(state.state_details.flow_run_id)
        # link artifacts are stored as markdown "[text](url)"
        links = {m for a in artifacts if a.key is None and a.type == "markdown" for m in re.findall(r"\]\((http[^)]+)\)", a.data)}
        assert "http://127.0.0.1:8000/alpha/mask.tif" in links and "http://127.0.0.1:8000/beta/water.gpkg" in links
        tables = {a.key: json.loads(a.data) for a in artifacts if a.type == "table"}
        row = tables["segment-alpha"][0]
        assert row["status"] == "done" and row["water area km²"] > 0 and row["polygons"] >= 1
        assert row["tiles processed"] > 0 and row["tiles failed"] == 0 and row["seconds"] is not None
        assert "error" in tables["segment-broken"][0]
        summary = next(a.data for a in artifacts if a.key == "segment-run-summary")
        assert "## Failures" in summary and "broken.tif" in summary and "alpha/mask.tif" in summary

        stamp = (out / "alpha" / "manifest.json").stat().st_mtime_ns
        for expected in ("skipped", "cached"):  # 2nd run: the file-level reuse; 3rd: Prefect's cache
            result = seg.segment_flow([str(two_scenes)], str(out), OPTIONS)
            assert [r["status"] for r in result] == [expected, expected]
        assert (out / "alpha" / "manifest.json").stat().st_mtime_ns == stamp  # not processed again

        changed = seg.segment_flow([str(two_scenes / "alpha.tif")], str(out), {**OPTIONS, "min_area": 32})
        assert changed[0]["status"] == "done"  # other parameters: processed again
        (out / "alpha" / "mask.tif").unlink()
        redone = seg.segment_flow([str(two_scenes / "alpha.tif")], str(out), {**OPTIONS, "min_area": 32})
        assert redone[0]["status"] == "done" and (out / "alpha" / "mask.tif").is_file()  # missing outputs: redone

    def test_uncertain_image_completes_the_run_with_its_reason(self, two_scenes: Path, tmp_path: Path,
                                                               monkeypatch) -> None:  # fmt: skip
        """beta's coarse rule abstains: no mask for it, the run still ends Completed, and its table
        artifact and the run's summary give the reason; a re-run reuses it and keeps saying so."""
        from dataclasses import replace

        import samgeo_pipeline.run.image_stats as pipeline

        reason = "no clear dark-smooth mode"
        real = pipeline.stats_from_array

        def stats(*args, **kwargs):
            found = real(*args, **kwargs)
            abstains = "beta" in str(args[4] if len(args) > 4 else kwargs.get("where"))
            return replace(found, coarse=replace(found.coarse, uncertain=reason)) if abstains else found

        monkeypatch.setattr(pipeline, "stats_from_array", stats)
        slots, real_slot = [], tasks.gpu_slot

        @contextlib.contextmanager
        def slot(gpu_limit):
            with real_slot(gpu_limit):
                slots.append(gpu_limit)
                yield

        monkeypatch.setattr(tasks, "gpu_slot", slot)
        out = tmp_path / "out"
        state = seg.segment_flow([str(two_scenes)], str(out), OPTIONS, return_state=True)
        assert state.is_completed()
        assert len(slots) == 1  # alpha's tiles; beta has none to run and does not wait for the GPU
        summaries = state.result()
        assert [(s["status"], s["uncertain"]) for s in summaries] == [("done", None), ("uncertain", reason)]
        assert {p.name for p in (out / "beta").iterdir()} == {".samgeo-lock", "quicklook.png", "item.json", "manifest.json"}
        artifacts = self._artifacts(state.state_details.flow_run_id)
        tables = {a.key: json.loads(a.data) for a in artifacts if a.type == "table"}
        assert tables["segment-beta"][0]["status"] == "uncertain" and tables["segment-beta"][0]["uncertain"] == reason
        assert "uncertain" not in tables["segment-alpha"][0]
        summary = next(a.data for a in artifacts if a.key == "segment-run-summary")
        assert "1 of 2 image(s) done, 1 uncertain" in summary and f"`beta.tif` (uncertain): {reason}" in summary
        again = seg.segment_flow([str(two_scenes)], str(out), OPTIONS)
        assert [(s["status"], s["uncertain"]) for s in again] == [("skipped", None), ("skipped", reason)]

    def test_remote_input_on_dask(self, tmp_path: Path) -> None:
        import fsspec

        scene = write_demo_scene(tmp_path / "remote.tif", 200, 300, seed=3)
        fsspec.filesystem("memory").pipe("/bucket/incoming/remote.tif", scene.read_bytes())
        out = tmp_path / "out"
        result = seg.segment_flow(
            ["memory://bucket/incoming/*.tif"], str(out), OPTIONS, output_base_url="https://dl.example/seg",
            dask_address="local", dask_cluster_kwargs={"processes": False, "n_workers": 1, "threads_per_worker": 2},
        )
        assert result[0]["status"] == "done"
        assert result[0]["links"]["mask.tif"] == "https://dl.example/seg/remote/mask.tif"
        assert (out / "remote" / "water.gpkg").is_file()
        assert not any((out / ".samgeo-staging").iterdir())  # the staged copy is removed

    def test_remote_rerun_of_local_bytes_deletes_nothing_of_the_user(self, tmp_path: Path) -> None:
        """Issue 11: a local run, then the same bytes from a URL into the same root: the reuse's
        summary named the first run's input, and the clean-up removed ``victim/in/`` with it."""
        import fsspec

        victim = tmp_path / "victim" / "in"
        victim.mkdir(parents=True)
        local = write_demo_scene(victim / "x.tif", 200, 300, seed=4)
        (victim / "KEEP_ME.txt").write_text("the user's own file")
        out = tmp_path / "out"
        assert seg.segment_flow([str(local)], str(out), OPTIONS)[0]["status"] == "done"
        fs = fsspec.filesystem("memory")
        fs.pipe("/issue11-bucket/x.tif", local.read_bytes())
        again = seg.segment_flow(["memory://issue11-bucket/x.tif"], str(out), OPTIONS)
        assert again[0]["status"] == "skipped" and again[0]["input"] == "memory:///issue11-bucket/x.tif"
        assert sorted(p.name for p in victim.iterdir()) == ["KEEP_ME.txt", "x.tif"]
        assert not any((out / ".samgeo-staging").iterdir())  # this run's staged copy is gone
        # other bytes under the same name: refused (the first run's outputs stay), staged copy removed too
        fs.pipe("/issue11-bucket/x.tif", write_demo_scene(tmp_path / "other.tif", 200, 300, seed=5).read_bytes())
        state = seg.segment_flow(["memory://issue11-bucket/x.tif"], str(out), OPTIONS, return_state=True)
        assert state.is_failed() and "holds the outputs of another input" in state.message
        assert json.loads((out / "x" / "manifest.json").read_text())["input"]["source"] == str(local)
        assert sorted(p.name for p in victim.iterdir()) == ["KEEP_ME.txt", "x.tif"]
        assert not any((out / ".samgeo-staging").iterdir())

    def test_dot_dot_in_a_url_stays_inside_the_output_root(self, tmp_path: Path) -> None:
        import fsspec

        scene = write_demo_scene(tmp_path / "scene.tif", 200, 300, seed=6)
        fsspec.filesystem("memory").pipe("/incoming/../../../esc/y.tif", scene.read_bytes())
        out = tmp_path / "a" / "b" / "out"
        out.mkdir(parents=True)
        before = sorted(p.name for p in tmp_path.iterdir())
        result = seg.segment_flow(["memory://incoming/../../../esc/y.tif"], str(out), OPTIONS,
                                  relative_to="memory://incoming")  # fmt: skip
        assert result[0]["status"] == "done" and result[0]["out_dir"] == str(out / "y")
        assert sorted(p.name for p in tmp_path.iterdir()) == before
        assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["out"]

    def test_sam_model_loaded_once_per_run(self, two_scenes: Path, tmp_path: Path, monkeypatch) -> None:
        import samgeo_pipeline.run.batch as runner
        from tests.tiny_sam import save_tiny_sam

        model_dir = save_tiny_sam(tmp_path / "tiny-sam")
        loads = []
        real_load = runner.load_predictor
        monkeypatch.setattr(runner, "load_predictor", lambda c: loads.append(c.model) or real_load(c))
        options = {**OPTIONS, "model": str(model_dir), "device": "cpu", "batch_size": 2}
        result = seg.segment_flow([str(two_scenes)], str(tmp_path / "out"), options)
        assert loads == [str(model_dir)]
        assert [r["status"] for r in result] == ["done", "done"]
        assert all(r["tiles"]["sam"] > 0 for r in result) and result[0]["model"] == str(model_dir)
        assert len(segment_steps.PREDICTORS) == 0

    @pytest.mark.parametrize("family", ["sam_hq", "sam2", "sam3"])
    def test_other_families_run_as_themselves_on_real_naip(self, tmp_path: Path, family: str) -> None:
        """Issue 25: the segment flow on a real NAIP scene with a tiny SAM-HQ / SAM 2 / SAM 3 folder
        (SAM 3 with the text prompt "water")."""
        from tests.models.test_families import NAIP
        from tests.tiny_sam import save_tiny_sam

        if not NAIP.exists():
            pytest.skip("../shared/data is not present")
        model_dir = save_tiny_sam(tmp_path / family, family=family)
        options = {**OPTIONS, "model": str(model_dir), "device": "cpu", "bands": "naip"}
        if family == "sam3":
            options |= {"prompt": "text", "text": "water", "text_threshold": 0.22, "text_combine": "none"}
        result = seg.segment_flow([str(NAIP)], str(tmp_path / "out"), options)
        assert result[0]["status"] == "done" and result[0]["tiles"]["sam"] > 0
        manifest = json.loads((tmp_path / "out" / NAIP.stem / "manifest.json").read_text())
        assert manifest["model"]["family"] == family
        assert manifest["prompt"]["kind"] == ("text" if family == "sam3" else "points")
