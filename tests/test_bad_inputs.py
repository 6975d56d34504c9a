"""Bad inputs: a one-line error naming the file and the reason, a non-zero exit, the other files
still processed, and no half-written file under a final name."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from samgeo_pipeline.cli import main
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import write_demo_scene
from samgeo_pipeline.errors import InputError, RasterReadError, SamgeoPipelineError
from samgeo_pipeline.run.image import segment_raster
from tests.scenes import disc, leftovers, multiband_scene, write_raster

FINAL_NAMES = {"mask.tif", "probability.tif", "water.gpkg", "quicklook.png", "item.json", "manifest.json"}


def zero_bytes(path: Path) -> Path:
    path.touch()
    return path


def text_file(path: Path) -> Path:
    path.write_text("GeoTIFF? no: just some text\n" * 20)
    return path


def truncated(compress: str | None) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        rng = np.random.default_rng(0)
        data = rng.integers(1, 255, (4, 400, 600), dtype=np.uint8)
        extra = {"compress": compress} if compress else {"compress": "none"}
        write_raster(path, data, **extra)
        content = path.read_bytes()
        path.write_bytes(content[: len(content) // 2])
        return path

    return make


def all_nodata(path: Path) -> Path:
    return write_raster(path, np.zeros((4, 200, 200), np.uint8))


CASES = {
    "zero-byte": (zero_bytes, r"empty file \(0 bytes\)", InputError),
    "text-as-tif": (text_file, r"not a readable raster", InputError),
    "truncated-raw": (truncated(None), r"read failed", RasterReadError),
    "truncated-deflate": (truncated("deflate"), r"read failed", RasterReadError),
    "all-nodata": (all_nodata, r"every pixel is nodata", InputError),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 150x200 demo scene, processed beside each bad file."""
    return write_demo_scene(tmp_path_factory.mktemp("good") / "good.tif", 150, 200)


def check_batch(bad: Path, good: Path, out: Path, reason: str, err: str, *flags: str) -> None:
    """The bad file fails with one line naming it and the reason; the good one is written."""
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, err
    line = error_lines[0]
    assert line.startswith(f"error: {bad}: ")
    assert re.search(reason, line), line
    assert "Traceback" not in err
    assert "See previous exception" not in line  # the reason must be readable on its own
    assert (out / good.stem / "manifest.json").is_file()
    assert (out / good.stem / "mask.tif").is_file()
    bad_dir = out / bad.stem
    assert not bad_dir.exists() or not (FINAL_NAMES & {p.name for p in bad_dir.iterdir()})
    assert not leftovers(out)


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_file_in_a_batch(kind: str, good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, reason, _ = CASES[kind]
    bad = make(tmp_path / "bad.tif")
    out = tmp_path / "out"
    code = main(["segment", str(bad), str(good), "--out", str(out), "--model", "none", "--no-progress"])
    assert code == 1
    check_batch(bad, good, out, reason, capsys.readouterr().err)


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_file_raises_typed_error(kind: str, tmp_path: Path) -> None:
    make, reason, error = CASES[kind]
    bad = make(tmp_path / "bad.tif")
    with pytest.raises(error, match=rf"^{bad}: .*{reason}"):
        segment_raster(bad, tmp_path / "out", SegmentConfig(model="none", progress=False))
    out = tmp_path / "out"
    assert not out.exists() or not (FINAL_NAMES & {p.name for p in out.iterdir()})
    assert not leftovers(tmp_path)


def test_missing_band(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --bands green=3,nir=9: a 13-band file has band 9, a 4-band file does not.
    water = disc((120, 120), (60, 60), 30)
    wide = write_raster(
        tmp_path / "wide.tif", multiband_scene(water, 13, {"green": 3, "nir": 9}), nodata=None, photometric="minisblack"
    )
    narrow = write_demo_scene(tmp_path / "narrow.tif", 120, 120)
    out = tmp_path / "out"
    code = main(["segment", str(narrow), str(wide), "--out", str(out), "--bands", "green=3,nir=9",
                 "--model", "none", "--no-progress"])
    assert code == 1
    check_batch(narrow, wide, out, r"band nir=9 does not exist \(the file has 4 band\(s\)\)", capsys.readouterr().err)


def test_every_input_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = [zero_bytes(tmp_path / "a.tif"), text_file(tmp_path / "b.tif")]
    assert main(["segment", *map(str, bad), "--out", str(tmp_path / "out"), "--model", "none", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert sum(line.startswith("error:") for line in err.splitlines()) == 2


def test_errors_share_one_root() -> None:
    assert issubclass(InputError, SamgeoPipelineError) and issubclass(InputError, ValueError)
    assert issubclass(RasterReadError, SamgeoPipelineError) and issubclass(RasterReadError, OSError)
