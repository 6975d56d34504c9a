"""Request paths and byte ranges of ``samgeo-pipeline serve`` (:mod:`samgeo_pipeline.serve.paths`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from samgeo_pipeline.serve.paths import PathRefused, parse_range, resolve_request_path


class TestPathRules:
    def test_resolve(self, tmp_path: Path) -> None:
        root = tmp_path.resolve()
        (root / "a b").mkdir()
        assert resolve_request_path(root, "/a%20b") == root / "a b"
        assert resolve_request_path(root, "/") == root
        for bad in ("/..", "/a/../..", "//x", "/%00", "/a%5C..%5C.."):
            with pytest.raises(PathRefused):
                resolve_request_path(root, bad)

    def test_parse_range(self) -> None:
        assert parse_range("bytes=0-0", 10) == (0, 0)
        assert parse_range("bytes=5-", 10) == (5, 9)
        assert parse_range("bytes=-20", 10) == (0, 9)
        assert parse_range("items=0-1", 10) is None
        assert parse_range("bytes=0-1,4-5", 10) is None  # multi-range: whole file
        for bad in ("bytes=10-", "bytes=3-2", "bytes=-", "bytes=x-1"):
            with pytest.raises(ValueError):
                parse_range(bad, 10)
