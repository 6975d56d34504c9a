"""errors.py: the exception summary every one-line error, log and manifest uses."""

from __future__ import annotations

import re
from pathlib import Path

from rasterio.errors import RasterioError

from samgeo_pipeline.errors import first_line

ROOT = Path(__file__).resolve().parents[1]


def test_first_line_follows_the_cause() -> None:
    cause = ValueError("TIFFReadEncodedTile() failed\nmore detail")
    exc = RasterioError("Read failed. See previous exception for details.")
    exc.__cause__ = cause
    assert first_line(exc) == "TIFFReadEncodedTile() failed"
    assert first_line(RasterioError("plain message\nsecond")) == "plain message"
    assert first_line(RasterioError("  \n")) == "RasterioError"
    assert first_line(RasterioError("\n  indented second line")) == "indented second line"
    lone = RasterioError("See previous exception")
    assert first_line(lone) == "See previous exception"


def test_no_module_summarises_exceptions_its_own_way() -> None:
    """One helper: no copy of the first-line idiom in the library or the flows."""
    pattern = re.compile(r"str\(exc\)[^\n]*splitlines\(\)\[0\]|def _first_line")
    copies = [
        str(path.relative_to(ROOT))
        for folder in ("samgeo_pipeline", "flows")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if pattern.search(path.read_text())
    ]
    assert copies == []
