"""The watch flow: stable-file detection, durable state, one segment run per file version."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows import watch, watch_state
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import InputError
from flows.watch_rules import WatchRules


def _grow(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


FAST = WatchRules(stable_seconds=0, retries=2, retry_backoff_seconds=10)


class TestPlan:
    def test_new_files_wait_one_scan_then_go(self) -> None:
        listing = {"/w/a.tif": {"size": 10, "mtime": "1"}, "/w/b.tif": {"size": 20, "mtime": "1"}}
        files, ready, waiting = watch_state.plan_scan({}, listing, now=100.0, rules=FAST)
        assert (ready, sorted(waiting)) == ([], ["/w/a.tif", "/w/b.tif"])
        files, ready, waiting = watch_state.plan_scan(files, listing, now=160.0, rules=FAST)
        assert (sorted(ready), waiting) == (["/w/a.tif", "/w/b.tif"], [])
        for p in ready:
            files[p]["status"] = "submitted"
        assert watch_state.plan_scan(files, listing, now=220.0, rules=FAST)[1:] == ([], [])

    def test_stable_means_unchanged_for_stable_seconds(self) -> None:
        listing = {"/w/a.tif": {"size": 10, "mtime": "1"}}
        files, _, _ = watch_state.plan_scan({}, listing, now=0.0)  # default: 180 s
        assert watch_state.plan_scan(files, listing, now=179.0)[1] == []  # two scans 179 s apart: not yet
        assert watch_state.plan_scan(files, listing, now=180.0)[1] == ["/w/a.tif"]

    def test_markers_rename_and_done_file(self) -> None:
        listing = {"/w/a.tif": {"size": 10, "mtime": "1"}}
        assert watch_state.plan_scan({}, listing, 0.0, WatchRules(ready="rename"))[1] == ["/w/a.tif"]
        done = WatchRules(ready="done-file")
        files, ready, waiting = watch_state.plan_scan({}, listing, 0.0, done, has_marker=lambda p: False)
        assert (ready, waiting) == ([], ["/w/a.tif"])
        assert watch_state.plan_scan(files, listing, 1.0, done, has_marker=lambda p: p == "/w/a.tif")[1] == ["/w/a.tif"]

    def test_growing_file_waits_and_changed_file_goes_again(self) -> None:
        files, _, _ = watch_state.plan_scan({}, {"/w/a.tif": {"size": 10, "mtime": "1"}}, 0.0, FAST)
        files, ready, waiting = watch_state.plan_scan(files, {"/w/a.tif": {"size": 30, "mtime": "2"}}, 1.0, FAST)
        assert (ready, waiting) == ([], ["/w/a.tif"])
        assert files["/w/a.tif"]["first_seen"] == 0.0
        files, ready, _ = watch_state.plan_scan(files, {"/w/a.tif": {"size": 30, "mtime": "2"}}, 2.0, FAST)
        assert ready == ["/w/a.tif"]
        files["/w/a.tif"]["status"] = "submitted"
        files, ready, waiting = watch_state.plan_scan(files, {"/w/a.tif": {"size": 31, "mtime": "3"}}, 3.0, FAST)
        assert (ready, waiting, files["/w/a.tif"]["status"]) == ([], ["/w/a.tif"], "pending")

    def test_vanished_pending_files_are_forgotten(self) -> None:
        files, _, _ = watch_state.plan_scan({}, {"/w/a.tif": {"size": 1, "mtime": "1"}}, 0.0, FAST)
        assert watch_state.plan_scan(files, {}, 1.0, FAST)[0] == {}

    def test_failures_back_off_then_give_up(self) -> None:
        listing = {"/w/a.tif": {"size": 1, "mtime": "1"}}
        entry = {"size": 1, "mtime": "1", "status": "submitted", "flow_run_id": "r1", "last_change": 0.0}
        watch_state.record_outcome(entry, False, "bad tile", 100.0, FAST)
        assert (entry["status"], entry["failures"], entry["next_try"]) == ("retry", 1, 110.0)
        files = {"/w/a.tif": entry}
        assert watch_state.plan_scan(files, listing, 109.0, FAST)[1] == []  # backing off
        assert watch_state.plan_scan(files, listing, 110.0, FAST)[1] == ["/w/a.tif"]
        watch_state.record_outcome(entry, False, "bad tile", 200.0, FAST)
        assert entry["next_try"] == 220.0  # doubled
        watch_state.record_outcome(entry, False, "bad tile again", 300.0, FAST)
        assert entry["status"] == "failed" and entry["reason"] == "bad tile again"
        assert watch_state.plan_scan(files, listing, 1e9, FAST)[1:] == ([], [])  # given up until the file changes
        text = watch_state.failed_markdown(files, "/w")
        assert "| `/w/a.tif` | 3 | gave up | bad tile again |" in text
        changed = {"/w/a.tif": {"size": 2, "mtime": "2"}}
        assert watch_state.plan_scan(files, changed, 1e9, FAST)[0]["/w/a.tif"]["status"] == "pending"

    def test_run_outcome(self) -> None:
        assert watch_state.run_outcome({"type": "COMPLETED", "timestamp": 0}, 1.0) == (True, "")
        assert watch_state.run_outcome({"type": "RUNNING", "timestamp": 0}, 1.0) is None
        assert watch_state.run_outcome({"type": "FAILED", "message": "1 failed:\n- x.tif: broken", "timestamp": 0}, 1.0) == (
            False, "1 failed: - x.tif: broken")
        assert watch_state.run_outcome({"type": "CRASHED", "message": "", "timestamp": 0}, 60.0) is None  # automation's turn
        assert watch_state.run_outcome({"type": "CRASHED", "message": "", "timestamp": 0}, 601.0) == (False, "crashed")


class TestListingAndState:
    def test_list_local_skips_hidden_and_other_suffixes(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "a.TIF").write_bytes(b"12")
        (tmp_path / "b.tiff").write_bytes(b"1")
        (tmp_path / ".b.tif.part").write_bytes(b"1")
        (tmp_path / ".samgeo-watch").mkdir()
        (tmp_path / ".samgeo-watch" / "x.tif").write_bytes(b"1")
        (tmp_path / "notes.txt").write_text("x")
        listing = watch_state.list_rasters(str(tmp_path))
        assert sorted(listing) == [str(tmp_path / "b.tiff"), str(tmp_path / "sub" / "a.TIF")]
        assert listing[str(tmp_path / "sub" / "a.TIF")]["size"] == 2
        with pytest.raises(InputError, match="does not exist"):
            watch_state.list_rasters(str(tmp_path / "missing"))

    def test_list_fsspec_url(self) -> None:
        import fsspec

        fs = fsspec.filesystem("memory")
        fs.pipe("/watched/in/a.tif", b"123")
        fs.pipe("/watched/in/readme.md", b"x")
        listing = watch_state.list_rasters("memory://watched/in")
        assert list(listing) == ["memory:///watched/in/a.tif"]
        assert listing["memory:///watched/in/a.tif"]["size"] == 3

    def test_state_round_trip_is_atomic(self, tmp_path: Path) -> None:
        path = watch_state.default_state_path(str(tmp_path))
        assert path == str(tmp_path / ".samgeo-watch" / "state.json")
        assert watch_state.load_state(path)["files"] == {}
        watch_state.save_state(path, {"version": 1, "files": {"a": {"size": 1}}})
        assert watch_state.load_state(path)["files"] == {"a": {"size": 1}}
        assert os.listdir(tmp_path / ".samgeo-watch") == ["state.json"]  # no temporary left over
        Path(path).write_text("{broken")
        with pytest.raises(InputError, match="move it away"):
            watch_state.load_state(path)
        remote = watch_state.default_state_path("memory://st/in")
        watch_state.save_state(remote, {"version": 1, "files": {"b": {}}})
        assert watch_state.load_state(remote)["files"] == {"b": {}}


def _fake_runs(monkeypatch) -> list[dict]:
    calls: list[dict] = []

    def fake_run_deployment(name, parameters, timeout, idempotency_key, flow_run_name):
        calls.append({"name": name, "parameters": parameters, "key": idempotency_key, "run_name": flow_run_name})
        return SimpleNamespace(id=f"run-{len(calls)}")

    monkeypatch.setattr(watch, "run_deployment", fake_run_deployment)
    return calls


def _scene(path: Path, seed: int = 1, descriptions=None) -> Path:
    import rasterio

    write_demo_scene(path, 40, 50, seed=seed)
    if descriptions is not None:
        with rasterio.open(path, "r+") as ds:
            ds.descriptions = descriptions
    return path


@pytest.mark.usefixtures("prefect_harness")
class TestWatchFlow:
    def test_two_new_files_two_runs_rescan_none_growing_waits(self, tmp_path: Path, monkeypatch) -> None:
        calls = _fake_runs(monkeypatch)
        inbox = tmp_path / "inbox"
        (inbox / "site").mkdir(parents=True)
        _scene(inbox / "one.tif")
        _scene(inbox / "site" / "two.tif", seed=2)
        rules = tmp_path / "watch.yaml"
        rules.write_text("stable_seconds: 0\ndefaults: {model: none}\n")
        scan = lambda: watch.watch_flow(str(inbox), str(tmp_path / "out"), rules_path=str(rules))  # noqa: E731

        first = scan()
        assert (first["submitted"], sorted(Path(p).name for p in first["waiting"])) == ({}, ["one.tif", "two.tif"])
        second = scan()
        assert len(second["submitted"]) == 2 and len(calls) == 2  # two new files => two runs
        assert {c["name"] for c in calls} == {"segment/segment"}
        params = {Path(c["parameters"]["inputs"][0]).name: c["parameters"] for c in calls}
        assert params["two.tif"] == {
            "inputs": [str(inbox / "site" / "two.tif")], "output_root": str(tmp_path / "out"),
            "relative_to": str(inbox), "options": {"model": "none", "bands": "red=1,green=2,blue=3,nir=4"},
            "bands_source": "descriptions",  # the demo scene names its bands
        }
        assert len({c["key"] for c in calls}) == 2
        monkeypatch.setattr(watch, "read_run_states", lambda ids: {})  # the fake runs are still running
        assert scan()["submitted"] == {} and len(calls) == 2  # rescan => none

        growing = inbox / "three.tif"
        growing.write_bytes(_scene(tmp_path / "three.tif", seed=3).read_bytes()[:100])
        assert scan()["waiting"] == [str(growing)]
        growing.write_bytes((tmp_path / "three.tif").read_bytes())
        os.utime(growing, ns=(growing.stat().st_atime_ns, growing.stat().st_mtime_ns + 10**9))
        assert scan()["waiting"] == [str(growing)] and len(calls) == 2  # still being written: waits
        assert list(scan()["submitted"]) == [str(growing)] and len(calls) == 3  # stable: one run

        state = json.loads((inbox / ".samgeo-watch" / "state.json").read_text())
        assert {e["status"] for e in state["files"].values()} == {"submitted"}
        assert state["files"][str(growing)]["flow_run_id"] == "run-3"

    def test_rules_choose_bands_and_a_contradicted_guess_is_refused(self, tmp_path: Path, monkeypatch) -> None:
        calls = _fake_runs(monkeypatch)
        inbox = tmp_path / "inbox"
        (inbox / "landsat").mkdir(parents=True)
        _scene(inbox / "landsat" / "l8.tif", descriptions=("SWIR1", "NIR", "Red", "Green"))
        _scene(inbox / "plain.tif", descriptions=(None, None, None, None))
        _scene(inbox / "odd.tif", descriptions=("SWIR2", "NIR", "x", "y"))
        _scene(inbox / "ruled.tif", descriptions=("SWIR2", "NIR", "x", "y"))
        rules = tmp_path / "watch.yaml"
        rules.write_text(
            "ready: rename\nretries: 1\nretry_backoff_seconds: 3600\ndefaults: {model: none}\nrules:\n"
            "  - name: odd-sensor\n    match: {pattern: 'ruled.*', band_count: 4, dtype: uint8}\n"
            "    options: {bands: 'swir=1,nir=2,red=3,green=4', gsd: 30}\n")
        result = watch.watch_flow(str(inbox), str(tmp_path / "out"), rules_path=str(rules))
        params = {Path(c["parameters"]["inputs"][0]).name: c["parameters"] for c in calls}
        assert sorted(params) == ["l8.tif", "plain.tif", "ruled.tif"]
        assert params["l8.tif"]["options"]["bands"] == "red=3,green=4,nir=2,swir=1"
        assert params["l8.tif"]["bands_source"] == "descriptions"
        assert params["plain.tif"]["bands_source"] == "guessed from 4 bands"
        assert params["ruled.tif"]["options"] == {"model": "none", "bands": "swir=1,nir=2,red=3,green=4", "gsd": 30}
        assert params["ruled.tif"]["bands_source"] == "rule odd-sensor"
        assert list(result["failed"]) == [str(inbox / "odd.tif")]
        assert "describes it as 'SWIR2'" in result["failed"][str(inbox / "odd.tif")]
        state = json.loads((inbox / ".samgeo-watch" / "state.json").read_text())
        assert state["files"][str(inbox / "odd.tif")]["status"] == "retry"

    def test_failed_runs_are_retried_then_listed(self, tmp_path: Path, monkeypatch) -> None:
        from prefect.client.orchestration import get_client

        calls = _fake_runs(monkeypatch)
        monkeypatch.setattr(watch, "read_run_states", lambda ids: {i: {"type": "FAILED", "timestamp": 0.0,
                                                                        "message": "a.tif: broken tile"} for i in ids})
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        _scene(inbox / "a.tif")
        rules = tmp_path / "watch.yaml"
        rules.write_text("ready: rename\nretries: 1\nretry_backoff_seconds: 0\ndefaults: {model: none}\n")
        scan = lambda: watch.watch_flow(str(inbox), str(tmp_path / "out"), rules_path=str(rules))  # noqa: E731
        assert len(scan()["submitted"]) == 1
        second = scan()  # the run failed: retried at once (back-off 0)
        assert second["failed"] == {str(inbox / "a.tif"): "a.tif: broken tile"} and len(second["submitted"]) == 1
        assert calls[0]["key"] != calls[1]["key"]  # a new attempt is a new run
        third = scan()  # failed again: retries spent
        assert third["failed"] and not third["submitted"] and len(calls) == 2
        assert scan()["failed"] == {} and len(calls) == 2
        with get_client(sync_client=True) as client:
            artifact = client.read_latest_artifacts()
        text = next(a.data for a in artifact if a.key == "watch-failed")
        assert "| `" + str(inbox / "a.tif") + "` | 2 | gave up | a.tif: broken tile |" in text

    def test_failed_submission_stays_pending_and_fails_the_scan(self, tmp_path: Path, monkeypatch) -> None:
        def missing(*args, **kwargs):
            raise ValueError("deployment 'segment/segment' not found")

        monkeypatch.setattr(watch, "run_deployment", missing)
        monkeypatch.setattr(watch.start_segment_run, "retries", 0)
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        _scene(inbox / "a.tif")
        rules = tmp_path / "watch.yaml"
        rules.write_text("stable_seconds: 0\n")
        assert watch.watch_flow(str(inbox), str(tmp_path / "out"), rules_path=str(rules))["waiting"]
        state = watch.watch_flow(str(inbox), str(tmp_path / "out"), rules_path=str(rules), return_state=True)
        assert state.is_failed() and "a.tif" in state.message
        recorded = json.loads((inbox / ".samgeo-watch" / "state.json").read_text())
        assert recorded["files"][str(inbox / "a.tif")]["status"] == "pending"  # retried next scan
