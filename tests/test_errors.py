"""The errors (:mod:`samgeo_pipeline.errors`): one root, built-in kinds, and one line from the CLI."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from samgeo_pipeline import cli, errors
from samgeo_pipeline.errors import SamgeoPipelineError, SamgeoPipelineWarning

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
