"""The crash-recovery automations' rules (end to end, with a killed worker: test_flows_e2e.py)."""

from __future__ import annotations

from flows.recovery import CRASH_AUTOMATION, recovery_automations


def test_a_run_is_watched_from_its_start_not_only_from_its_first_heartbeat() -> None:
    """A process killed between ``Running`` and its first heartbeat must still be marked crashed."""
    crash = next(a for a in recovery_automations() if a.name == CRASH_AUTOMATION)
    assert crash.trigger.after == {"prefect.flow-run.Running", "prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= crash.trigger.expect
