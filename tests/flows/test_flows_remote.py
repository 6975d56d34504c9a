"""Shared outputs on an S3-compatible store: moto's standalone server on loopback, real s3fs client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from flows import remote

pytest.importorskip("s3fs")
pytest.importorskip("moto")

OPTIONS = {"model": "none", "tile_size": 256, "halo": 32}


def test_upload_puts_data_first_manifest_last_and_keeps_hidden_files(tmp_path: Path) -> None:
    import fsspec

    for name in ("manifest.json", "mask.tif", "water.gpkg", ".samgeo-lock", ".mask.tif.partial-1.tif"):
        (tmp_path / name).write_bytes(name.encode())
    order = remote.upload_outputs(tmp_path, "memory://shared/out/a")
    assert order == ["mask.tif", "water.gpkg", "manifest.json"]
    fs = fsspec.filesystem("memory")
    assert sorted(Path(p).name for p in fs.ls("/shared/out/a", detail=False)) == sorted(order)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """An S3 endpoint (moto server) on a free loopback port, with a bucket ``shared``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 - the server's log while it lives
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(endpoint + "/moto-api/", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "moto server did not start"
                time.sleep(0.3)
        options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
        fs, _ = remote.remote_fs("s3://shared", options)
        fs.mkdir("shared")
        yield endpoint, options
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.usefixtures("prefect_harness")
def test_segment_flow_writes_to_s3_and_reuses_the_remote_manifest(s3, two_scenes: Path, monkeypatch) -> None:
    from flows import segment as seg

    endpoint, options = s3
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    made = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **kw: made.append(real_mkdtemp(*a, **kw)) or made[-1])
    run = lambda: seg.segment_flow([str(two_scenes / "alpha.tif")], "s3://shared/out", OPTIONS,  # noqa: E731 - a one-line re-run, read beside its arguments
                                   output_storage_options=options)
    first = run()[0]
    assert first["status"] == "done" and first["out_dir"] == "s3://shared/out/alpha"
    fs, _ = remote.remote_fs("s3://shared", options)
    names = {Path(p).name for p in fs.ls("shared/out/alpha", detail=False)}
    assert {"mask.tif", "water.gpkg", "quicklook.png", "manifest.json"} <= names
    assert not any(n.startswith(".") for n in names)  # locks and temporaries stay local
    assert not [m for m in made if "samgeo-outputs-" in m and Path(m).exists()]  # the run's local folder is gone
    mask_url = first["links"]["mask.tif"]
    assert mask_url == f"{endpoint}/shared/out/alpha/mask.tif"
    signed = fs.url("shared/out/alpha/mask.tif")  # the bucket is private: the same URL, signed
    assert signed.startswith(mask_url + "?")
    assert httpx.get(signed, timeout=10).content == fs.cat_file("shared/out/alpha/mask.tif")
    manifest = json.loads(fs.cat_file("shared/out/alpha/manifest.json"))
    assert manifest["input"]["sha256"] == first["sha256"]

    assert run()[0]["status"] == "skipped"  # the remote manifest says it is done
    fs.rm_file("shared/out/alpha/water.gpkg")
    assert run()[0]["status"] == "done"  # an output is missing: made again
    assert fs.exists("shared/out/alpha/water.gpkg")


@pytest.mark.usefixtures("prefect_harness")
def test_credentials_from_a_secret_block_not_the_parameters_nor_the_environment(s3, two_scenes: Path, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """The Prefect way to give a fleet its store's credentials: a Secret block named by the run;
    the worker needs no AWS_* variables and the credentials appear in no parameter, summary or link."""
    from prefect.blocks.system import Secret

    from flows import segment as seg
    from samgeo_pipeline.errors import ConfigError

    endpoint, options = s3
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    Secret(value={"key": options["key"], "secret": options["secret"]}).save("samgeo-s3-test", overwrite=True)
    run = lambda block: seg.segment_flow([str(two_scenes / "beta.tif")], "s3://shared/blocked", OPTIONS,  # noqa: E731 - a one-line re-run, read beside its arguments
                                         output_storage_options={"endpoint_url": endpoint},
                                         output_credentials_block=block)
    summary = run("samgeo-s3-test")[0]
    assert summary["status"] == "done" and summary["links"]["mask.tif"] == f"{endpoint}/shared/blocked/beta/mask.tif"
    assert options["secret"] not in json.dumps(summary)
    with pytest.raises(ConfigError, match="'samgeo-s3-nope': no such Secret block; create it with Secret"):
        run("samgeo-s3-nope")


def test_s3_links_and_the_summary_say_how_to_open_a_store_root() -> None:
    """``samgeo-pipeline serve`` cannot read ``s3://``: the summary does not tell to run it there, and
    AWS roots get AWS's URLs rather than the local serve default."""
    from flows.segment_report import run_markdown

    assert remote.store_base_url("s3://fleet/outputs", None) == "https://fleet.s3.amazonaws.com/outputs/"
    assert remote.store_base_url("s3://fleet/outputs", {"client_kwargs": {"region_name": "eu-west-1"}}) == \
        "https://fleet.s3.eu-west-1.amazonaws.com/outputs/"
    assert remote.store_base_url("s3://fleet/out", {"endpoint_url": "http://minio:9000"}) == "http://minio:9000/fleet/out/"
    text = run_markdown([], "s3://fleet/outputs", "https://fleet.s3.amazonaws.com/outputs/")
    assert "samgeo-pipeline serve" not in text and "`rio info /vsis3/fleet/outputs/IMAGE/mask.tif`" in text
    assert "`samgeo-pipeline serve /data/out`" in run_markdown([], Path("/data/out"), "http://127.0.0.1:8000/")
