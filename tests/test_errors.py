"""The errors (:mod:`samgeo_pipeline.errors`): one root, built-in kinds, one line from the CLI, and the
exception summary every one-line error, log and manifest uses."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from rasterio.errors import RasterioError

from samgeo_pipeline import cli, errors
from samgeo_pipeline.errors import SamgeoPipelineError, SamgeoPipelineWarning, first_line

ROOT = Path(__file__).resolve().parents[1]

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]


def test_every_error_has_the_one_root_and_every_warning_its_own() -> None:
    errors_, warnings_ = [c for c in CLASSES if issubclass(c, Exception) and not issubclass(c, Warning)], \
        [c for c in CLASSES if issubclass(c, Warning)]  # fmt: skip
    assert len(errors_) >= 10 and len(warnings_) >= 4
    assert all(issubclass(c, SamgeoPipelineError) for c in errors_)
    assert all(issubclass(c, SamgeoPipelineWarning) for c in warnings_)
    # callers catch by kind: bad values are ValueErrors, unreadable files and missing weights OSErrors
    assert issubclass(errors.InputError, ValueError) and issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.RasterReadError, OSError) and issubclass(errors.ModelUnavailableError, OSError)
    assert issubclass(errors.SizeLimitError, errors.InputError)


@pytest.mark.parametrize("error", [errors.InputError, errors.OutputWriteError, errors.CheckpointError])
def test_the_cli_prints_one_line_and_exits_1(error: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    def fail(path: Path) -> Path:
        raise error(f"{path}: broken\x1b[2J\nsecond line from https://u:secret@h.example/x")

    monkeypatch.setattr("samgeo_pipeline.demo.write_demo_scene", fail)
    assert cli.main(["demo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "demo_scene.tif: broken\\x1b[2J" in err
    assert "secret" not in err


def test_other_exceptions_are_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug is a traceback, not a one-line error."""
    monkeypatch.setattr("samgeo_pipeline.demo.write_demo_scene", lambda path: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["demo", str(tmp_path)])


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
