"""Links to a run's outputs (:mod:`flows.links`): the base URL and how the links are answered."""

from __future__ import annotations

import pytest

from flows import links


def test_base_url_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(links.BASE_URL_ENV, raising=False)
    assert links.base_url() == "http://127.0.0.1:8000/"
    monkeypatch.setenv(links.BASE_URL_ENV, "https://files.example/out")
    assert links.base_url() == "https://files.example/out/"
    assert links.base_url("http://x:1/") == "http://x:1/"


def test_how_to_open_a_local_root_or_a_store() -> None:
    assert links.how_to_open("/data/out") == "serve them with `samgeo-pipeline serve /data/out`"
    s3 = links.how_to_open("s3://fleet/out/")
    assert "`rio info /vsis3/fleet/out/IMAGE/mask.tif`" in s3 and "output_base_url" in s3
    assert "with the store's own tools" in links.how_to_open("memory://x/out")
