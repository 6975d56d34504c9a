"""The output root's ``catalog.json`` (:mod:`samgeo_pipeline.outputs.stac_catalog`): under a lock, and rebuilt on S3."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from samgeo_pipeline.outputs.stac import validate_offline
from samgeo_pipeline.outputs.stac_catalog import rebuild_remote_catalog, register_item
from tests.outputs.test_stac import load


def _register_many(root: str, names: list[str]) -> None:
    for name in names:
        register_item(Path(root), Path(root) / name)


def test_concurrent_processes_lose_no_catalog_link(tmp_path: Path) -> None:
    names = [f"img{i:03d}" for i in range(120)]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "item.json").write_text("{}")
        (tmp_path / name / "manifest.json").write_text("{}")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_register_many, args=(str(tmp_path), names[k::6])) for k in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    hrefs = sorted(x["href"] for x in load(tmp_path / "catalog.json")["links"] if x["rel"] == "item")
    assert hrefs == [f"./{n}/item.json" for n in names]


class TestRemoteCatalog:
    def fs_with(self, folders: dict[str, list[str]]):
        from fsspec.implementations.memory import MemoryFileSystem

        fs = MemoryFileSystem()
        fs.store.clear()
        for folder, files in folders.items():
            for name in files:
                fs.pipe_file(f"/bucket/out/{folder}/{name}", b"{}")
        return fs

    def test_lists_finished_folders_only(self) -> None:
        fs = self.fs_with({"a": ["item.json", "manifest.json"], "b": ["item.json"], "c/d": ["item.json", "manifest.json"],
                           ".samgeo-staging/x": ["item.json", "manifest.json"]})  # fmt: skip
        assert rebuild_remote_catalog(fs, "/bucket/out") == ["a", "c/d"]
        catalog = json.loads(fs.cat_file("/bucket/out/catalog.json"))
        validate_offline(catalog)
        assert [x["href"] for x in catalog["links"] if x["rel"] == "item"] == ["./a/item.json", "./c/d/item.json"]

    def test_a_put_that_missed_an_item_is_written_again(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Writer A listed before writer B's item arrived; B's catalog was then overwritten by A's put:
        A's second listing sees B's item and A writes again."""
        fs = self.fs_with({"a": ["item.json", "manifest.json"]})
        real_pipe = fs.pipe_file
        puts = []

        def pipe_then_b_arrives(path: str, data: bytes, **kw: object) -> None:
            real_pipe(path, data, **kw)
            puts.append(json.loads(data))
            if len(puts) == 1:  # B uploads its folder (and its own catalog, overwritten above) meanwhile
                real_pipe("/bucket/out/b/item.json", b"{}")
                real_pipe("/bucket/out/b/manifest.json", b"{}")

        monkeypatch.setattr(fs, "pipe_file", pipe_then_b_arrives)  # fsspec caches the instance: undone after
        assert rebuild_remote_catalog(fs, "/bucket/out") == ["a", "b"]
        assert len(puts) == 2
        assert [x["title"] for x in puts[-1]["links"] if x["rel"] == "item"] == ["a", "b"]
