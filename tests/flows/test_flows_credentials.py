"""Issue 21, items 4 and 8: a URL's credentials never leave the flow (manifests, summaries, logs,
artifacts, task names, error messages, file names), and one missing remote input fails alone.

Remote inputs come from ``samgeo-pipeline serve`` on loopback (it ignores the credentials sent).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows import inputs
from flows import segment as seg
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.serve.server import make_server

try:  # moto's S3 server on loopback, for the storage-options test
    from flows import remote
    from tests.flows.test_flows_remote import s3  # noqa: F401 - the S3 server fixture, used by name
except pytest.skip.Exception:  # s3fs or moto missing: that test skips itself
    pass

OPTIONS = {"model": "none", "tile_size": 256, "halo": 32}
SECRETS = ("s3cr3tpw", "SIGSECRET", "CREDSECRET", "TOKSECRET")


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``http://127.0.0.1:PORT`` serving a folder with ``scene.tif`` (a small demo scene)."""
    folder = tmp_path_factory.mktemp("http-inputs")
    write_demo_scene(folder / "scene.tif", 200, 300, seed=7)
    server = make_server(folder, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def prefect_log() -> Iterator[list[str]]:
    """Every record of Prefect's loggers (flow, task and engine), tracebacks included, as text."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logging.Formatter("%(name)s %(message)s").format(record))

    handler, logger = Keep(level=logging.DEBUG), logging.getLogger("prefect")
    run_loggers = [logging.getLogger(f"prefect.{n}") for n in ("flow_runs", "task_runs")]
    was_disabled = [r.disabled for r in run_loggers]
    for run_logger in run_loggers:  # prefect's disable_run_logger, used from threads elsewhere, can leave them off
        run_logger.disabled = False
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        for run_logger, disabled in zip(run_loggers, was_disabled, strict=True):
            run_logger.disabled = disabled


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_url_path_and_staged_name_drop_userinfo_and_query() -> None:
    url = "https://alice:s3cr3tpw@h.example/a/scene.tif?X-Amz-Signature=SIGSECRET#frag"
    assert str(inputs.url_path(url)) == "h.example/a/scene.tif"
    assert inputs.image_output_dirs([url], Path("/out"), "https://h.example/") == [Path("/out/a/scene")]


def test_a_failed_fetch_names_the_url_without_credentials(http_root, tmp_path: Path) -> None:
    host, _ = http_root
    shown = r"http://\*\*\*@127\.0\.0\.1:\d+/missing\.tif\?sig=\*\*\*: not found"
    with pytest.raises(inputs.RemoteInputError, match=shown) as info:
        inputs.fetch_to(f"http://alice:s3cr3tpw@{host}/missing.tif?sig=SIGSECRET", tmp_path / "staging")
    assert not _leaks(str(info.value)) and info.value.__suppress_context__  # the backend's text is not chained
    assert not any((tmp_path / "staging").iterdir())
    with pytest.raises(inputs.RemoteReadError, match=r"http://\*\*\*@127\.0\.0\.1:1/\?token=\*\*\*") as info:
        inputs.expand_specs(["http://alice:s3cr3tpw@127.0.0.1:1/?token=TOKSECRET"])  # a listing that fails
    assert not _leaks(str(info.value))


@pytest.mark.usefixtures("prefect_harness")
class TestFlowRuns:
    def _artifacts(self, flow_run_id):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        with get_client(sync_client=True) as client:
            return client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )

    def _task_runs(self, flow_run_id) -> dict[str, int]:
        """Task run name -> how many times it ran."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {r.name: r.run_count for r in runs}

    def test_credentials_of_a_url_are_nowhere(self, http_root, tmp_path: Path, prefect_log: list[str]) -> None:
        """Issue 21 row 4: ``http://alice:pw@.../scene.tif`` was written verbatim into manifest.json."""
        host, _ = http_root
        url = (f"http://alice:s3cr3tpw@{host}/scene.tif?X-Amz-Credential=CREDSECRET&X-Amz-Date=20260101"
               "&X-Amz-Security-Token=TOKSECRET&X-Amz-Signature=SIGSECRET")
        shown = f"http://***@{host}/scene.tif?X-Amz-Credential=***&X-Amz-Date=20260101" \
                "&X-Amz-Security-Token=***&X-Amz-Signature=***"
        out = tmp_path / "out"
        state = seg.segment_flow([url], str(out), OPTIONS, output_base_url="https://bob:s3cr3tpw@files.example/seg",
                                 return_state=True)
        assert state.is_completed(), state.message
        summaries = state.result()
        assert summaries[0]["status"] == "done" and summaries[0]["input"] == shown
        assert summaries[0]["links"]["mask.tif"] == "https://***@files.example/seg/scene/mask.tif"
        manifest = json.loads((out / "scene" / "manifest.json").read_text())
        assert manifest["input"]["source"] == shown
        files = [p for p in out.rglob("*")]
        assert not _leaks(" ".join(str(p) for p in files))  # no file or folder name
        assert not [p for p in files if p.is_file() and _leaks(p.read_bytes().decode("latin-1"))]  # no content
        assert not _leaks(json.dumps(summaries))
        artifacts = self._artifacts(state.state_details.flow_run_id)
        assert artifacts and not _leaks(" ".join(f"{a.data} {a.description}" for a in artifacts))
        tables = {a.key: json.loads(a.data) for a in artifacts if a.type == "table"}
        assert tables["segment-scene"][0]["image"] == "scene.tif"  # the file name, not its query
        names = list(self._task_runs(state.state_details.flow_run_id))
        assert "fetch scene.tif" in names and not _leaks(" ".join(names))
        again = seg.segment_flow([url], str(out), OPTIONS)  # its log line names the source
        assert again[0]["status"] == "skipped" and again[0]["input"] == shown
        assert any(shown in line for line in prefect_log) and not _leaks("\n".join(prefect_log))

    def test_a_missing_url_fails_alone(self, http_root, two_scenes: Path, tmp_path: Path,
                                       prefect_log: list[str]) -> None:
        """Issue 21 row 8: a 404 URL beside a good local file stopped the whole flow at the expand step."""
        host, _ = http_root
        missing = f"http://alice:s3cr3tpw@{host}/missing.tif"
        out = tmp_path / "out"
        state = seg.segment_flow([str(two_scenes / "alpha.tif"), missing], str(out), OPTIONS, return_state=True)
        assert state.is_failed()  # as for any failed image: the others done, the run Failed with each reason
        assert "1 of 2 image(s) failed" in state.message
        assert f"http://***@{host}/missing.tif: not found" in state.message and not _leaks(state.message)
        assert (out / "alpha" / "manifest.json").is_file() and not (out / "missing").exists()
        artifacts = self._artifacts(state.state_details.flow_run_id)
        tables = {a.key: json.loads(a.data) for a in artifacts if a.type == "table"}
        assert tables["segment-alpha"][0]["status"] == "done"
        row = tables["segment-missing"][0]
        assert row["status"] == "failed" and row["error"].startswith(f"http://***@{host}/missing.tif: not found")
        summary = next(a.data for a in artifacts if a.key == "segment-run-summary")
        assert "1 of 2 image(s) done" in summary and "`missing.tif`: http://***@" in summary
        fetches = {n: c for n, c in self._task_runs(state.state_details.flow_run_id).items() if n.startswith("fetch")}
        assert fetches == {"fetch missing.tif": 1}  # a 404 is not retried
        assert not _leaks("\n".join(prefect_log) + json.dumps([a.data for a in artifacts]))
        assert not any((out / ".samgeo-staging").iterdir())

    def test_watch_flow_logs_and_artifacts_hide_credentials(self, http_root, tmp_path: Path, monkeypatch,
                                                            prefect_log: list[str]) -> None:
        """The watch flow names each file (a URL of the watched root) in its logs, artifacts and run names."""
        from types import SimpleNamespace

        from flows import watch

        host, _ = http_root
        root = f"http://alice:s3cr3tpw@{host}/?token=TOKSECRET"
        good, missing = (f"http://alice:s3cr3tpw@{host}/{n}?sig=SIGSECRET" for n in ("scene.tif", "missing.tif"))
        monkeypatch.setattr(watch, "list_rasters", lambda url: {good: {"size": 1, "mtime": "1"},
                                                                missing: {"size": 1, "mtime": "1"}})
        calls = []
        monkeypatch.setattr(watch, "run_deployment", lambda name, parameters, timeout, idempotency_key, flow_run_name:
                            calls.append((parameters, flow_run_name)) or SimpleNamespace(id=f"run-{len(calls)}"))
        rules = tmp_path / "watch.yaml"
        rules.write_text("stable_seconds: 0\ndefaults: {model: none}\n")
        states = [watch.watch_flow(root, str(tmp_path / "out"), rules_path=str(rules),
                                   state_path=str(tmp_path / "state.json"), return_state=True) for _ in range(2)]
        result = states[1].result()
        assert list(result["submitted"]) == [good] and list(result["failed"]) == [missing]
        assert calls[0][0]["inputs"] == [good]  # the real URL is what the segment run reads
        assert calls[0][1] == "segment-scene.tif"
        texts = [a.data for s in states for a in self._artifacts(s.state_details.flow_run_id)]
        assert any("missing.tif" in t for t in texts) and not _leaks("\n".join(texts))
        assert any(f"http://***@{host}/missing.tif?sig=***: refused" in line for line in prefect_log)
        assert not _leaks("\n".join(prefect_log))


@pytest.mark.usefixtures("prefect_harness")
def test_storage_options_are_shown_redacted(two_scenes: Path, monkeypatch, prefect_log, request) -> None:
    """Secret storage options of an ``s3://`` output root: used for the upload, shown as ``***``."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    endpoint, _ = request.getfixturevalue("s3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = {"endpoint_url": endpoint, "key": "AKIDCREDSECRET", "secret": "s3cr3tpw",
               "client_kwargs": {"aws_session_token": "TOKSECRET"}}
    state = seg.segment_flow([str(two_scenes / "alpha.tif")], "s3://shared/creds", OPTIONS,
                             output_storage_options=options, return_state=True)
    assert state.is_completed(), state.message
    fs, _ = remote.remote_fs("s3://shared", options)
    assert fs.exists("shared/creds/alpha/manifest.json")  # the real options were used
    assert not _leaks(fs.cat_file("shared/creds/alpha/manifest.json").decode())
    assert any("'secret': '***'" in line and "'aws_session_token': '***'" in line for line in prefect_log)
    assert not _leaks("\n".join(prefect_log) + json.dumps(state.result()))
