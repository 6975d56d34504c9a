"""The watch flow's plain functions (:mod:`flows.watch_state`): the scan plan, listing, the state file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows import watch_state
from flows.watch_rules import WatchRules
from samgeo_pipeline.errors import InputError

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
