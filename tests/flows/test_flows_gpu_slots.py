"""The GPU slot of a worker process (its lock, the fleet's ``gpu`` limit and its lease) and the
limit's creation, which degrades to no limit when the API refuses."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from flows import gpu_slots


def test_missing_api_degrades_to_no_limit(monkeypatch, caplog) -> None:
    import prefect.client.orchestration as orchestration

    def unreachable(*args, **kwargs):
        raise ConnectionError("API unreachable")

    monkeypatch.setattr(orchestration, "get_client", unreachable)
    assert gpu_slots.ensure_concurrency_limit("gpu") is False
    assert "not serialised" in caplog.text


def test_gpu_slot_lease_runs_out_within_a_minute_of_a_crash(monkeypatch) -> None:
    """A killed holder's ``gpu`` slot is a lease nobody renews: it must run out in 60 s, not 300 s."""
    import flows.gpu_slots

    taken = []

    @contextmanager
    def concurrency(name, occupy=1, **kwargs):
        taken.append((name, kwargs.get("lease_duration", 300)))
        yield

    monkeypatch.setattr(flows.gpu_slots, "concurrency", concurrency)
    with flows.gpu_slots.gpu_slot("gpu"):
        pass
    assert taken == [("gpu", 60.0)]


def test_without_a_limit_only_the_process_lock_is_taken(monkeypatch) -> None:
    """No ``gpu_limit``: no global slot is asked for, but a second thread waits for the first's GPU."""

    def no_global_limit(*args, **kwargs):
        raise AssertionError("a global concurrency slot was taken without a gpu limit")

    monkeypatch.setattr(gpu_slots, "concurrency", no_global_limit)
    entered, order = threading.Event(), []

    def second() -> None:
        entered.wait()
        with gpu_slots.gpu_slot(None):
            order.append("second")

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    with gpu_slots.gpu_slot(None):
        entered.set()
        thread.join(timeout=0.5)  # the second thread cannot enter while the first holds the GPU
        assert thread.is_alive() and order == []
        order.append("first")
    thread.join(timeout=30)
    assert order == ["first", "second"]


def test_the_lock_is_released_when_the_image_fails(monkeypatch) -> None:
    """An exception inside the slot releases the process lock: the next image is not blocked."""

    @contextmanager
    def concurrency(name, occupy=1, **kwargs):
        yield

    monkeypatch.setattr(gpu_slots, "concurrency", concurrency)
    with pytest.raises(RuntimeError, match="image failed"), gpu_slots.gpu_slot("gpu"):
        raise RuntimeError("image failed")
    assert not gpu_slots._GPU_LOCK.locked()
