"""The watch flow: stable-file detection, durable state, one segment run per file version, a run log without credentials."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows import watch
from samgeo_pipeline.demo import write_demo_scene


def _grow(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


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
        scan = lambda: watch.watch_flow(str(inbox), str(tmp_path / "out"), rules_path=str(rules))  # noqa: E731 - a one-line re-run, read beside its arguments

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
        scan = lambda: watch.watch_flow(str(inbox), str(tmp_path / "out"), rules_path=str(rules))  # noqa: E731 - a one-line re-run, read beside its arguments
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


def test_the_run_log_never_shows_credentials(caplog: pytest.LogCaptureFixture) -> None:
    log = watch.RedactedLog(logging.getLogger("samgeo-test-redacted"))
    with caplog.at_level(logging.INFO, logger="samgeo-test-redacted"):
        log.info("fetching %s", "https://user:hunter2@h.example/x.tif?X-Amz-Signature=abc123")
        log.debug("not shown")
    assert "hunter2" not in caplog.text and "abc123" not in caplog.text
    assert "fetching https://" in caplog.text and "h.example/x.tif" in caplog.text and "not shown" not in caplog.text
