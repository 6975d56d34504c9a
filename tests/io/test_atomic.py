"""The one atomic-write helper (samgeo_pipeline.io.atomic) and the checkpoint swap built on it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from samgeo_pipeline.finetune.checkpoint import save_checkpoint
from samgeo_pipeline.io.atomic import atomic_path, replace_symlink, write_bytes_atomic, write_text_atomic
from samgeo_pipeline.sam.predictor import CHECKPOINT_META
from tests.scenes import leftovers


class TestAtomicPath:
    def test_success_renames(self, tmp_path: Path) -> None:
        final = tmp_path / "sub" / "out.txt"
        with atomic_path(final) as tmp:
            assert tmp.parent == final.parent and tmp != final
            assert tmp.name.startswith(".out.txt.partial-") and tmp.suffix == ".txt"
            assert not tmp.exists()  # a free name: drivers that refuse existing files can create it
            tmp.write_text("done")
            assert not final.exists()
        assert final.read_text() == "done"
        assert not leftovers(tmp_path)

    def test_failure_leaves_nothing(self, tmp_path: Path) -> None:
        final = tmp_path / "out.txt"
        with pytest.raises(RuntimeError, match="boom"):
            with atomic_path(final) as tmp:
                tmp.write_text("half")
                raise RuntimeError("boom")
        assert not final.exists()
        assert not leftovers(tmp_path)

    def test_failure_keeps_previous_file(self, tmp_path: Path) -> None:
        final = tmp_path / "out.txt"
        final.write_text("old")
        with pytest.raises(RuntimeError):
            with atomic_path(final) as tmp:
                tmp.write_text("half")
                raise RuntimeError("crash")
        assert final.read_text() == "old"

    def test_file_and_folder_flushed_before_and_after_rename(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        final = tmp_path / "out.json"
        synced: list[tuple[str, bool]] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            synced.append((os.readlink(f"/proc/self/fd/{fd}"), final.exists()))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        write_text_atomic(final, "{}")
        assert [exists for _, exists in synced] == [False, True]  # the file before the rename, the folder after
        assert ".partial-" in synced[0][0] and synced[1][0] == str(tmp_path)

    def test_concurrent_writers_never_share_a_temp_name(self, tmp_path: Path) -> None:
        final = tmp_path / "state.json"
        errors: list[BaseException] = []

        def write(i: int) -> None:
            try:
                for _ in range(20):
                    write_bytes_atomic(final, str(i).encode() * 1000)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        content = final.read_text()
        assert len(set(content)) == 1 and len(content) == 1000  # one writer's whole file
        assert not leftovers(tmp_path)


class TestReplaceSymlink:
    def test_repoints_in_place(self, tmp_path: Path) -> None:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        link = tmp_path / "last"
        replace_symlink(link, "a")
        replace_symlink(link, "b")
        assert os.readlink(link) == "b"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "last"]


class _FakeModel:
    """Stands in for a SAM model: ``save_pretrained`` writes weights and may check the old checkpoint."""

    def __init__(self, weights: bytes, during_save=None) -> None:
        self.weights = weights
        self.during_save = during_save

    def save_pretrained(self, directory: Path) -> None:
        if self.during_save:
            self.during_save()
        (Path(directory) / "model.safetensors").write_bytes(self.weights)


class TestCheckpointSwap:
    def test_last_is_never_missing_and_old_versions_go(self, tmp_path: Path) -> None:
        last = tmp_path / "last"
        save_checkpoint(last, _FakeModel(b"one"), {"epoch": 1}, {"epoch": 1})
        first_version = last.resolve()

        def old_checkpoint_still_complete() -> None:
            assert (last / "model.safetensors").read_bytes() == b"one"
            assert (last / CHECKPOINT_META).is_file() and (last / "training_state.pt").is_file()

        save_checkpoint(last, _FakeModel(b"two", old_checkpoint_still_complete), {"epoch": 2}, {"epoch": 2})
        assert last.is_symlink() and (last / "model.safetensors").read_bytes() == b"two"
        assert not first_version.exists()  # removed after the swap
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".last.v-")) == ["last"]
        assert len(list(tmp_path.glob(".last.v-*"))) == 1

    def test_failed_save_keeps_the_previous_checkpoint(self, tmp_path: Path) -> None:
        last = tmp_path / "last"
        save_checkpoint(last, _FakeModel(b"one"), {"epoch": 1})

        def crash() -> None:
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            save_checkpoint(last, _FakeModel(b"two", crash), {"epoch": 2})
        assert (last / "model.safetensors").read_bytes() == b"one"
        assert len(list(tmp_path.glob(".last.v-*"))) == 1  # the half-written version is gone

    def test_folder_from_an_older_version_becomes_a_link(self, tmp_path: Path) -> None:
        last = tmp_path / "last"
        last.mkdir()
        (last / "model.safetensors").write_bytes(b"legacy")
        save_checkpoint(last, _FakeModel(b"new"), {"epoch": 2})
        assert last.is_symlink() and (last / "model.safetensors").read_bytes() == b"new"
        assert len(list(tmp_path.glob(".last.v-*"))) == 1

    def test_versions_a_killed_save_left_are_removed_by_the_next_save(self, tmp_path: Path) -> None:
        last, best = tmp_path / "last", tmp_path / "best"
        save_checkpoint(last, _FakeModel(b"one"), {"epoch": 1})
        save_checkpoint(best, _FakeModel(b"one"), {"epoch": 1})
        killed = tmp_path / ".last.v-killed"  # what a save killed before its swap leaves
        killed.mkdir()
        (killed / "model.safetensors").write_bytes(b"half")
        save_checkpoint(last, _FakeModel(b"two"), {"epoch": 2})
        assert not killed.exists() and len(list(tmp_path.glob(".last.v-*"))) == 1
        assert (best / "model.safetensors").read_bytes() == b"one"  # another name's versions untouched
