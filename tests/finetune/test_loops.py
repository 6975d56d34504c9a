"""Epochs of fine-tuning (:mod:`samgeo_pipeline.finetune.loops`): batches per epoch and process. Training runs
are in ``tests/finetune/test_train.py``."""

from __future__ import annotations

from samgeo_pipeline.finetune.loops import epoch_batches, steps_per_epoch


def test_steps_are_the_same_on_every_process() -> None:
    assert steps_per_epoch(10, 1, 4) == 3
    assert steps_per_epoch(10, 3, 4) == 1  # 3 positions each
    assert steps_per_epoch(2, 4, 4) == 1  # fewer positions than processes: still one step
    assert steps_per_epoch(0, 1, 4) == 1


def test_batches_are_a_seeded_shuffle_per_epoch_and_rank() -> None:
    positions = list(range(10))
    batches = epoch_batches(positions, 4, 3, seed=0, epoch=1, rank=0)
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(sum(batches, [])) == positions
    assert epoch_batches(positions, 4, 3, 0, 1, 0) == batches  # reproducible
    assert epoch_batches(positions, 4, 3, 0, 2, 0) != batches and epoch_batches(positions, 4, 3, 0, 1, 1) != batches
    assert [len(b) for b in epoch_batches(positions, 4, 2, 0, 1, 0)] == [4, 4]  # the step count caps the epoch
