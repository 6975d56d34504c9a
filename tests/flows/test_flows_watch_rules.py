"""Watch rules: loading and checking the YAML, matching files by name and metadata, band sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.watch_rules import FileMeta, WatchRules, load_rules, options_for, read_meta
from samgeo_pipeline.errors import ConfigError, InputError

LANDSAT = FileMeta(4, "uint16", ("SWIR1", "NIR", "Red", "Green"), {"SENSOR": "OLI"})
UNNAMED = FileMeta(4, "uint8", (None, None, None, None), {})


def _rules(tmp_path: Path, text: str) -> WatchRules:
    path = tmp_path / "watch.yaml"
    path.write_text(text)
    return load_rules(path)


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    rules = load_rules(tmp_path / "absent.yaml")
    assert (rules.ready, rules.stable_seconds, rules.retries, rules.rules) == ("stable", 180.0, 3, ())
    assert load_rules(None) == rules
    assert [rules.retry_delay(n) for n in (1, 2, 3)] == [60.0, 120.0, 240.0]


def test_first_matching_rule_wins_on_every_condition(tmp_path: Path) -> None:
    rules = _rules(tmp_path, """
defaults: {model: none, gsd: 10}
rules:
  - name: landsat-oli
    match: {pattern: "landsat/*", band_count: 4, dtype: uint16, tags: {SENSOR: OLI},
            descriptions: [swir1, nir, red, green]}
    options: {bands: "swir=1,nir=2,red=3,green=4", gsd: 30}
  - name: other
    match: {band_count: 4}
    options: {bands: naip}
""")
    assert options_for(rules, "landsat/a/b.tif", LANDSAT) == (
        {"model": "none", "gsd": 30, "bands": "swir=1,nir=2,red=3,green=4"}, "rule landsat-oli")
    assert options_for(rules, "elsewhere/b.tif", LANDSAT)[1] == "rule other"  # pattern fails: next rule
    tagged = FileMeta(4, "uint16", LANDSAT.descriptions, {"SENSOR": "TM"})
    assert options_for(rules, "landsat/b.tif", tagged)[1] == "rule other"


def test_bands_from_descriptions_guess_and_refusal(tmp_path: Path) -> None:
    rules = _rules(tmp_path, "defaults: {model: none}\n")
    assert options_for(rules, "a.tif", LANDSAT) == ({"model": "none", "bands": "red=3,green=4,nir=2,swir=1"},
                                                    "descriptions")
    assert options_for(rules, "a.tif", UNNAMED) == ({"model": "none", "bands": "red=1,green=2,blue=3,nir=4"},
                                                    "guessed from 4 bands")
    contradicted = FileMeta(4, "uint16", ("SWIR2", "NIR", "", ""), {})
    with pytest.raises(InputError, match=r"^a.tif: the guessed band mapping .*'SWIR2'"):
        options_for(rules, "a.tif", contradicted)
    assert options_for(_rules(tmp_path, "defaults: {bands: naip}\n"), "a.tif", contradicted)[1] == "defaults"


@pytest.mark.parametrize("text, message", [
    ("ready: soon\n", "ready must be one of stable, rename, done-file"),
    ("retry: 3\n", r"unknown key\(s\) \['retry'\]"),
    ("defaults: {tiles: 3}\n", "defaults: unknown option 'tiles'"),
    ("rules:\n  - match: {size: 3}\n", "rule 1: match takes pattern"),
    ("stable_seconds: soon\n", "stable_seconds, retries and retry_backoff_seconds are numbers"),
    ("[1, 2]\n", "must be a mapping"),
    ("a: [\n", "cannot read the watch rules"),
])
def test_bad_rules_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _rules(tmp_path, text)
    assert str(info.value).startswith(str(tmp_path / "watch.yaml"))


def test_read_meta(tmp_path: Path) -> None:
    from samgeo_pipeline.demo import write_demo_scene

    meta = read_meta(write_demo_scene(tmp_path / "d.tif", 20, 30, seed=1))
    assert (meta.band_count, meta.dtype, meta.descriptions) == (4, "uint8", ("red", "green", "blue", "nir"))
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="bad.tif: not a readable raster"):
        read_meta(tmp_path / "bad.tif")


def test_the_example_file_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "flows" / "watch_rules.example.yaml"
    rules = load_rules(example)
    assert rules.defaults == {"model": "none"} and "landsat-swir-nir-red-green" in [r.name for r in rules.rules]
    for dtype in ("uint16", "uint8"):  # Pucallpa's display-stretched uint8 too (tests/flows/test_watch_shared_data.py)
        assert options_for(rules, "landsat/x.tif", FileMeta(4, dtype, (None,) * 4, {}))[1] == "rule landsat-swir-nir-red-green"
