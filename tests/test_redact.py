"""Credentials never leave the process (issue 21, item 4): the redaction helper, the manifest's
``input.source`` and the CLI's error lines. The flow's places are in ``tests/flows/test_flows_credentials.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samgeo_pipeline.cli import main
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.redact import MASK, is_secret_name, redact, redact_options
from samgeo_pipeline.run.image import segment_raster

SECRETS = ("s3cr3tpw", "SIGSECRET", "CREDSECRET", "TOKSECRET")
PRESIGNED = ("https://bucket.example/k/scene.tif?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=CREDSECRET%2F1"
             "&X-Amz-Date=20260101T000000Z&X-Amz-Security-Token=TOKSECRET&X-Amz-Signature=SIGSECRET")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:s3cr3tpw@127.0.0.1:8080/scene.tif", "http://***@127.0.0.1:8080/scene.tif"),
        ("https://TOKSECRET@host/x.tif", "https://***@host/x.tif"),  # a user alone may be a token
        ("ftp://a:p@ss:s3cr3tpw@host/x.tif", "ftp://***@host/x.tif"),  # '@' in the password
        (PRESIGNED, "https://bucket.example/k/scene.tif?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
                    "&X-Amz-Date=20260101T000000Z&X-Amz-Security-Token=***&X-Amz-Signature=***"),
        ("https://acc.blob.core.windows.net/c/x.tif?sv=2022&sig=SIGSECRET&se=2030",
         "https://acc.blob.core.windows.net/c/x.tif?sv=2022&sig=***&se=2030"),
        ("error: FileNotFoundError('http://u:s3cr3tpw@h/x.tif?token=TOKSECRET')",
         "error: FileNotFoundError('http://***@h/x.tif?token=***')"),
        ("/vsicurl/http://u:s3cr3tpw@h/x.tif: no such file", "/vsicurl/http://***@h/x.tif: no such file"),
        ("http://u:s3cr3tpw@h/m.tif?sig=SIGSECRET: refused (see http://h/x?key=K).",
         "http://***@h/m.tif?sig=***: refused (see http://h/x?key=***)."),  # sentence punctuation kept
        ("s3://bucket/a/x.tif", "s3://bucket/a/x.tif"),
        ("/data/a@b/x.tif and http://h/x.tif?page=2", "/data/a@b/x.tif and http://h/x.tif?page=2"),
    ],
)
def test_redact_hides_userinfo_and_secret_query_values(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_secret_names_are_a_documented_list() -> None:
    for name in ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Signature", "sig", "token",
                 "access_token", "key", "api_key", "apiKey", "password", "secret", "aws_secret_access_key",
                 "account_key", "sas_token", "connection_string", "Authorization", "AWSAccessKeyId"):
        assert is_secret_name(name), name
    for name in ("X-Amz-Date", "X-Amz-Algorithm", "sv", "se", "page", "region_name", "endpoint_url", "anon"):
        assert not is_secret_name(name), name


def test_redact_options_hides_secret_keys_and_urls_at_any_depth() -> None:
    options = {
        "key": "AKIAEXAMPLE", "secret": "s3cr3tpw", "token": "TOKSECRET", "anon": False,
        "endpoint_url": "http://minio:s3cr3tpw@127.0.0.1:9000",
        "client_kwargs": {"endpoint_url": "http://u:s3cr3tpw@h", "aws_session_token": "TOKSECRET", "region_name": "eu"},
        "headers": {"Authorization": "Bearer TOKSECRET"}, "urls": ["https://h/x?sig=SIGSECRET"],
    }
    shown = redact_options(options)
    assert shown == {
        "key": MASK, "secret": MASK, "token": MASK, "anon": False, "endpoint_url": "http://***@127.0.0.1:9000",
        "client_kwargs": {"endpoint_url": "http://***@h", "aws_session_token": MASK, "region_name": "eu"},
        "headers": {"Authorization": MASK}, "urls": ["https://h/x?sig=***"],
    }
    assert options["secret"] == "s3cr3tpw"  # the real options are untouched (still used for reading)
    assert not any(s in json.dumps(shown) for s in SECRETS)


def test_manifest_source_never_holds_credentials(tmp_path: Path) -> None:
    """Issue 21 row 4: ``input.source`` was written verbatim (``serve`` publishes it)."""
    scene = write_demo_scene(tmp_path / "scene.tif", 120, 160, seed=1)
    config = SegmentConfig(model="none", tile_size=128, halo=16, progress=False)
    result = segment_raster(scene, tmp_path / "out", config, source="http://alice:s3cr3tpw@127.0.0.1:9/scene.tif")
    assert result.status == "done"
    text = (tmp_path / "out" / "manifest.json").read_text()
    assert json.loads(text)["input"]["source"] == "http://***@127.0.0.1:9/scene.tif"
    assert "s3cr3tpw" not in text


def test_cli_error_lines_hide_credentials(tmp_path: Path, capsys) -> None:
    url = "/vsicurl/http://alice:s3cr3tpw@127.0.0.1:9/scene.tif?X-Amz-Signature=SIGSECRET"
    assert main(["segment", url, "--out", str(tmp_path / "out"), "--model", "none", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "http://***@127.0.0.1:9/scene.tif?X-Amz-Signature=***" in err
    assert not any(s in err for s in SECRETS)
