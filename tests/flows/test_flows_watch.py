"""The watch flow: stable-file detection, durable state, one segment run per file version."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows import watch


def _grow(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


class TestPlan:
    def test_new_files_wait_one_scan_then_go(self) -> None:
        listing = {"/w/a.tif": {"size": 10, "mtime": "1"}, "/w/b.tif": {"size": 20, "mtime": "1"}}
        files, ready, waiting = watch.plan_scan({}, listing, now=100.0)
        assert (ready, sorted(waiting)) == ([], ["/w/a.tif", "/w/b.tif"])
        files, ready, waiting = watch.plan_scan(files, listing, now=160.0)
        assert (sorted(ready), waiting) == (["/w/a.tif", "/w/b.tif"], [])
        for p in ready:
            files[p]["status"] = "submitted"
        assert watch.plan_scan(files, listing, now=220.0)[1:] == ([], [])

    def test_growing_file_waits_and_changed_file_goes_again(self) -> None:
        files, _, _ = watch.plan_scan({}, {"/w/a.tif": {"size": 10, "mtime": "1"}}, 0.0)
        files, ready, waiting = watch.plan_scan(files, {"/w/a.tif": {"size": 30, "mtime": "2"}}, 1.0)
        assert (ready, waiting) == ([], ["/w/a.tif"])
        assert files["/w/a.tif"]["first_seen"] == 0.0
        files, ready, _ = watch.plan_scan(files, {"/w/a.tif": {"size": 30, "mtime": "2"}}, 2.0)
        assert ready == ["/w/a.tif"]
        files["/w/a.tif"]["status"] = "submitted"
        files, ready, waiting = watch.plan_scan(files, {"/w/a.tif": {"size": 31, "mtime": "3"}}, 3.0)
        assert (ready, waiting, files["/w/a.tif"]["status"]) == ([], ["/w/a.tif"], "pending")

    def test_vanished_pending_files_are_forgotten(self) -> None:
        files, _, _ = watch.plan_scan({}, {"/w/a.tif": {"size": 1, "mtime": "1"}}, 0.0)
        assert watch.plan_scan(files, {}, 1.0)[0] == {}


class TestListingAndState:
    def test_list_local_skips_hidden_and_other_suffixes(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "a.TIF").write_bytes(b"12")
        (tmp_path / "b.tiff").write_bytes(b"1")
        (tmp_path / ".b.tif.part").write_bytes(b"1")
        (tmp_path / ".samgeo-watch").mkdir()
        (tmp_path / ".samgeo-watch" / "x.tif").write_bytes(b"1")
        (tmp_path / "notes.txt").write_text("x")
        listing = watch.list_rasters(str(tmp_path))
        assert sorted(listing) == [str(tmp_path / "b.tiff"), str(tmp_path / "sub" / "a.TIF")]
        assert listing[str(tmp_path / "sub" / "a.TIF")]["size"] == 2
        with pytest.raises(watch.InputError, match="does not exist"):
            watch.list_rasters(str(tmp_path / "missing"))

    def test_list_fsspec_url(self) -> None:
        import fsspec

        fs = fsspec.filesystem("memory")
        fs.pipe("/watched/in/a.tif", b"123")
        fs.pipe("/watched/in/readme.md", b"x")
        listing = watch.list_rasters("memory://watched/in")
        assert list(listing) == ["memory:///watched/in/a.tif"]
        assert listing["memory:///watched/in/a.tif"]["size"] == 3

    def test_state_round_trip_is_atomic(self, tmp_path: Path) -> None:
        path = watch.default_state_path(str(tmp_path))
        assert path == str(tmp_path / ".samgeo-watch" / "state.json")
        assert watch.load_state(path)["files"] == {}
        watch.save_state(path, {"version": 1, "files": {"a": {"size": 1}}})
        assert watch.load_state(path)["files"] == {"a": {"size": 1}}
        assert os.listdir(tmp_path / ".samgeo-watch") == ["state.json"]  # no temporary left over
        Path(path).write_text("{broken")
        with pytest.raises(watch.InputError, match="move it away"):
            watch.load_state(path)
        remote = watch.default_state_path("memory://st/in")
        watch.save_state(remote, {"version": 1, "files": {"b": {}}})
        assert watch.load_state(remote)["files"] == {"b": {}}


@pytest.mark.usefixtures("prefect_harness")
class TestWatchFlow:
    def test_two_new_files_two_runs_rescan_none_growing_waits(self, tmp_path: Path, monkeypatch) -> None:
        calls: list[dict] = []

        def fake_run_deployment(name, parameters, timeout, idempotency_key, flow_run_name):
            calls.append({"name": name, "parameters": parameters, "key": idempotency_key, "run_name": flow_run_name})
            return SimpleNamespace(id=f"run-{len(calls)}")

        monkeypatch.setattr(watch, "run_deployment", fake_run_deployment)
        inbox = tmp_path / "inbox"
        (inbox / "site").mkdir(parents=True)
        (inbox / "one.tif").write_bytes(b"a" * 10)
        (inbox / "site" / "two.tif").write_bytes(b"b" * 20)
        scan = lambda: watch.watch_flow(str(inbox), str(tmp_path / "out"), options={"model": "none"})  # noqa: E731

        first = scan()
        assert (first["submitted"], sorted(Path(p).name for p in first["waiting"])) == ({}, ["one.tif", "two.tif"])
        second = scan()
        assert len(second["submitted"]) == 2 and len(calls) == 2  # two new files => two runs
        assert {c["name"] for c in calls} == {"segment/segment"}
        params = {Path(c["parameters"]["inputs"][0]).name: c["parameters"] for c in calls}
        assert params["two.tif"] == {
            "inputs": [str(inbox / "site" / "two.tif")], "output_root": str(tmp_path / "out"),
            "relative_to": str(inbox), "options": {"model": "none"},
        }
        assert len({c["key"] for c in calls}) == 2
        assert scan()["submitted"] == {} and len(calls) == 2  # rescan => none

        growing = inbox / "three.tif"
        growing.write_bytes(b"c" * 5)
        assert scan()["waiting"] == [str(growing)]
        _grow(growing, b"c" * 5)
        os.utime(growing, ns=(growing.stat().st_atime_ns, growing.stat().st_mtime_ns + 10**9))
        assert scan()["waiting"] == [str(growing)] and len(calls) == 2  # still being written: waits
        assert list(scan()["submitted"]) == [str(growing)] and len(calls) == 3  # stable: one run

        state = json.loads((inbox / ".samgeo-watch" / "state.json").read_text())
        assert {e["status"] for e in state["files"].values()} == {"submitted"}
        assert state["files"][str(growing)]["flow_run_id"] == "run-3"

    def test_failed_submission_stays_pending_and_fails_the_scan(self, tmp_path: Path, monkeypatch) -> None:
        def missing(*args, **kwargs):
            raise ValueError("deployment 'segment/segment' not found")

        monkeypatch.setattr(watch, "run_deployment", missing)
        monkeypatch.setattr(watch.start_segment_run, "retries", 0)
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        (inbox / "a.tif").write_bytes(b"1")
        assert watch.watch_flow(str(inbox), str(tmp_path / "out"))["waiting"]
        state = watch.watch_flow(str(inbox), str(tmp_path / "out"), return_state=True)
        assert state.is_failed() and "a.tif" in state.message
        recorded = json.loads((inbox / ".samgeo-watch" / "state.json").read_text())
        assert recorded["files"][str(inbox / "a.tif")]["status"] == "pending"  # retried next scan
