"""Output folder names and paths (:mod:`samgeo_pipeline.io.paths`): safe, capped in bytes, apart, inside the root.

The CLI runs over hostile names (dots, 255-byte stems, escape sequences, links) are in ``tests/test_security.py``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

import pytest

from samgeo_pipeline.errors import UnsafePathError
from samgeo_pipeline.io.paths import cap_name, check_inside, output_dirs, output_name, printable, safe_name


@pytest.mark.parametrize("name", ["..", ".", "...", "", "a/b", "a\\b", "a\nb", "\x00"])
def test_folder_names_are_never_dots_or_separators(name: str) -> None:
    safe = safe_name(name)
    assert safe not in ("", ".", "..") and set(safe) - {"."}
    assert "/" not in safe and "\\" not in safe and "\n" not in safe and "\x00" not in safe


def test_output_dirs_stay_below_root(tmp_path: Path) -> None:
    root = tmp_path / "out"
    inputs = [Path("/x/...tif"), Path("/x/..tif"), Path("/x/a\nb.tif"), Path("/x/a\\b.tif"), Path("/x/.tif")]
    for d in output_dirs(inputs, root):
        assert d.parent == root and d.name not in (".", "..")
        check_inside(d, root)
    with pytest.raises(UnsafePathError):
        check_inside(root, root)  # the root itself is no image's folder


@pytest.mark.parametrize("max_bytes", [255, 246, 20])
def test_capped_names_fit_and_stay_apart(max_bytes: int) -> None:
    names = ["é" * 200 + "a", "é" * 200 + "b", "x" * 300 + ".tif", "\udcff" * 300, "short"]
    capped = [cap_name(n, max_bytes) for n in names]
    assert all(len(os.fsencode(c)) <= max_bytes for c in capped)
    assert len(set(capped)) == len(names) and capped[-1] == "short"
    assert capped[2].endswith(".tif") and capped[0].startswith("é")  # whole characters, suffix kept
    capped[0].encode("utf-8")  # valid UTF-8: no character cut in half


def test_names_are_printed_escaped() -> None:
    assert printable("a\x1b[2Jb\nc") == "a\\x1b[2Jb\\x0ac"
    assert printable("x\u202etxt.tif") == "x\\u202etxt.tif"  # a bidi override cannot reorder the line
    assert printable("\udcff.tif") == "\\udcff.tif"  # an undecodable byte
    assert printable("été 2020.tif") == "été 2020.tif"


def test_output_name_keeps_other_suffixes_apart() -> None:
    assert [output_name(PurePath(p)) for p in ("a/x.tif", "a/x.tiff", "...tif", "..tif")] == ["x", "x", "__", "_"]
    assert [output_name(PurePath(p), suffix_in_name=True) for p in ("x.tif", "x.TIFF", "x.vrt", "x")] == [
        "x", "x_tiff", "x_vrt", "x"
    ]  # fmt: skip


def test_same_named_inputs_get_a_hash_of_their_path_and_subfolders_are_safe(tmp_path: Path) -> None:
    root = tmp_path / "out"
    dirs = output_dirs([PurePath("/a/x.tif"), PurePath("/b/x.tif"), PurePath("/c/y.tif")], root,
                       subfolders=[("2020",), ("2020",), ("..", "a/b")])  # fmt: skip
    assert dirs[2] == root / "__" / "a_b" / "y"
    assert dirs[0].parent == dirs[1].parent == root / "2020" and dirs[0] != dirs[1]
    assert all(d.name.startswith("x_") and len(d.name) == 10 for d in dirs[:2])
    assert output_dirs([PurePath("/a/x.tif"), PurePath("/b/x.tif")], root) == [root / d.name for d in dirs[:2]]


def test_a_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "scene").symlink_to(elsewhere)
    assert check_inside(root / "new" / "deeper", root) == root / "new" / "deeper"
    with pytest.raises(UnsafePathError, match=r"scene: resolves to .*elsewhere, not inside the output root .*remove the link"):
        check_inside(root / "scene", root)
    with pytest.raises(UnsafePathError):
        check_inside(root / ".." / "out2", root)
