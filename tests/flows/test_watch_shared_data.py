"""The example watch rules on the sensors users drop (``../shared/data``; skipped when absent).

Each shared scene is dropped into a watched folder and given its options as the watch flow gives
them (:func:`flows.watch_state.file_options` with ``flows/watch_rules.example.yaml``): it must get its
real band order from a rule (never a guess) and, segmented with those options, a water share
within 2 points of a CLI run with that order passed explicitly as ``--bands``. Per-band Landsat 8
files (``l8_B2.tif``, ...) are not scenes and are left out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flows.segment_steps import build_config
from flows.watch_rules import load_rules
from flows.watch_state import file_options, relative_name
from samgeo_pipeline.cli import main
from samgeo_pipeline.io.bands import parse_bands
from samgeo_pipeline.run.image import segment_raster
from tests.scenes import DATA_DIR

pytestmark = pytest.mark.slow

EXAMPLE_RULES = Path(__file__).resolve().parents[2] / "flows" / "watch_rules.example.yaml"
#: Folder, file pattern, the band order the data's README gives (and what else a CLI user must
#: pass: red, NIR and SWIR1 alone need the known reflectance scale).
SCENES = [
    ("naip_potholes", "m_*.tif", "red=1,green=2,blue=3,nir=4", []),
    ("landsat_pucallpa", "landsat_*.tif", "swir=1,nir=2,red=3,green=4", []),
    ("bakerlake_aerial_rgb", "image_*.tif", "red=1,green=2,blue=3", []),
    ("landsat_colorado_snow_nowater", "*_red_nir_swir1.tif", "red=1,nir=2,swir=3", ["--reflectance-scale", "0.0001"]),
    ("sentinel2_havel_winter", "s2l1c_*.tif", "blue=2,green=3,red=4,nir=8,swir=12,swir2=13", []),
    ("cellula_water", "images/1*.tif", "blue=2,green=3,red=4,nir=5,swir=6,swir2=7", []),
]


def _scenes() -> list[tuple[Path, str, list[str]]]:
    found = []
    for folder, pattern, bands, extra in SCENES:
        paths = sorted((DATA_DIR / folder).glob(pattern))
        found += [(p, bands, extra) for p in (paths[:2] if folder == "cellula_water" else paths)]
    return found


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"real data not found: {DATA_DIR}")
@pytest.mark.parametrize("scene,bands,extra", _scenes(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_each_shared_scene_dropped_into_the_watched_folder_gets_its_bands(scene: Path, bands: str, extra: list[str],
                                                                          tmp_path: Path) -> None:
    watched = tmp_path / "incoming"
    watched.mkdir()
    dropped = Path(shutil.copy2(scene, watched / scene.name))
    options, source = file_options(str(dropped), relative_name(str(dropped), str(watched)), load_rules(EXAMPLE_RULES),
                                   None)
    assert source.startswith("rule "), f"{scene.name}: {source}"  # never a guess for a known sensor
    assert parse_bands(options["bands"]) == parse_bands(bands), f"{scene.name}: {options['bands']} ({source})"

    watch_run = segment_raster(dropped, tmp_path / "watch", build_config(options), bands_source=source)
    assert main(["segment", str(scene), "--out", str(tmp_path / "cli"), "--model", "none", "--bands", bands,
                 "--no-progress", *extra]) in (0, 3)  # 3: uncertain, the same for both
    cli = json.loads((tmp_path / "cli" / scene.stem / "manifest.json").read_text())
    assert watch_run.manifest.status == cli["status"]
    watch_share, cli_share = watch_run.manifest.water.fraction_of_valid, cli["water"]["fraction_of_valid"]
    if cli_share is None:  # uncertain: no mask on either side
        assert watch_share is None
    else:
        assert abs(watch_share - cli_share) * 100 <= 2, (watch_share, cli_share)
