"""The crash-recovery automations' rules (end to end, with killed workers: test_flows_e2e.py)."""

from __future__ import annotations

from contextlib import contextmanager

from flows.recovery import (
    CANCEL_AUTOMATION,
    CRASH_AUTOMATION,
    RETRY_AUTOMATION,
    ensure_automations,
    recovery_automations,
)


def _automation(name: str):
    return next(a for a in recovery_automations() if a.name == name)


def test_a_run_is_watched_from_its_start_not_only_from_its_first_heartbeat() -> None:
    """A process killed between ``Running`` and its first heartbeat must still be marked crashed."""
    crash = _automation(CRASH_AUTOMATION)
    assert {"prefect.flow-run.Running", "prefect.flow-run.heartbeat"} <= crash.trigger.after
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= crash.trigger.expect


def test_a_run_killed_while_its_process_starts_is_watched_from_pending() -> None:
    """A worker killed while it starts the flow process leaves the run Pending: that must be
    followed by Running (or a heartbeat or a final state) within the window, or it is crashed."""
    crash = _automation(CRASH_AUTOMATION)
    assert "prefect.flow-run.Pending" in crash.trigger.after
    assert "prefect.flow-run.Running" in crash.trigger.expect
    assert "prefect.flow-run.Pending" not in crash.trigger.expect


def test_a_silent_cancelling_run_is_cancelled_not_crashed_and_retried() -> None:
    """Cancelling ends the crash watch (a crash would be retried), and its own automation ends it Cancelled."""
    crash, cancel = _automation(CRASH_AUTOMATION), _automation(CANCEL_AUTOMATION)
    assert "prefect.flow-run.Cancelling" in crash.trigger.expect
    assert "prefect.flow-run.Cancelling" not in crash.trigger.after
    assert cancel.trigger.after == {"prefect.flow-run.Cancelling"}
    assert "prefect.flow-run.Cancelled" in cancel.trigger.expect and cancel.trigger.posture.value == "Proactive"
    assert cancel.actions[0].state.value == "CANCELLED"
    assert _automation(RETRY_AUTOMATION).trigger.expect == {"prefect.flow-run.Crashed"}


def test_ensure_automations_updates_an_older_version_of_the_rules(prefect_harness) -> None:
    """A server set up by an older ``flows/recovery.py`` gets the new rules, not "exists"."""
    from prefect.client.orchestration import get_client

    old = _automation(CRASH_AUTOMATION)
    old.trigger.after = {"prefect.flow-run.heartbeat", "prefect.flow-run.Running"}  # before Pending was watched
    old.create()
    try:
        done = ensure_automations()
        assert done == {CRASH_AUTOMATION: "updated", RETRY_AUTOMATION: "created", CANCEL_AUTOMATION: "created"}
        with get_client(sync_client=True) as client:
            stored = client.read_automations_by_name(CRASH_AUTOMATION)
        assert len(stored) == 1 and "prefect.flow-run.Pending" in stored[0].trigger.after
        assert set(ensure_automations().values()) == {"exists"}
    finally:
        with get_client(sync_client=True) as client:
            for name in (CRASH_AUTOMATION, RETRY_AUTOMATION, CANCEL_AUTOMATION):
                for automation in client.read_automations_by_name(name):
                    client.delete_automation(automation.id)


def test_gpu_slot_lease_runs_out_within_a_minute_of_a_crash(monkeypatch) -> None:
    """A killed holder's ``gpu`` slot is a lease nobody renews: it must run out in 60 s, not 300 s
    (the segment flow's ``gpu_slot``: tests/flows/test_flows_gpu_slots.py)."""
    import flows.finetune

    taken = []

    @contextmanager
    def concurrency(name, occupy=1, **kwargs):
        taken.append((name, kwargs.get("lease_duration", 300)))
        yield

    monkeypatch.setattr(flows.finetune, "concurrency", concurrency)
    monkeypatch.setattr("samgeo_pipeline.finetune.finetune", _FakeFinetune())
    from prefect.logging import disable_run_logger

    with disable_run_logger():
        flows.finetune.train.fn(object(), gpu_limit="gpu")
    assert taken == [("gpu", 60.0)]


class _FakeFinetune:
    """Stands in for the training: returns what :func:`flows.finetune.train` reads."""

    def __call__(self, config, log=None):
        from types import SimpleNamespace

        return SimpleNamespace(out_dir="out", best_dir=None, last_dir="out/last", curves=None, best_epoch=None,
                               completed=True, history=[], seconds=0.0, counts={})
