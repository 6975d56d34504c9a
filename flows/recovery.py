"""Crash recovery for a fleet of workers: two Prefect automations, created once per server.

A worker or machine that dies (``kill -9``, power loss) cannot report its flow run's end, so the
run would stay ``Running`` for good. With ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` set in the flow
process (the deployments set 30 s, Prefect's minimum), each deployment run emits a
``prefect.flow-run.heartbeat`` event every 30 s, and:

1. ``samgeo: crash silent runs`` (proactive): a flow run whose start (``Running``) or heartbeat
   is followed by neither a heartbeat nor a final state within ``silence_seconds`` (default 60)
   is set to ``Crashed``, which also ends its concurrency leases. The start counts too: a process
   killed before its first heartbeat went out would otherwise never be caught.
2. ``samgeo: retry crashed runs`` (reactive): a ``Crashed`` run tagged ``samgeo-recover`` (the
   segment deployment's runs) is set back to ``Scheduled``, so any live worker of the pool runs it
   again from the start; the segment flow gives up (``Failed``) when started more than
   ``SAMGEO_MAX_ATTEMPTS`` times. The new attempt removes the temporary files the dead one left in
   its output folders (:func:`flows.stages.remove_partials`, under the folder's lock).

Create them with ``python flows/recovery.py`` (idempotent: existing automations of these names
are left as they are).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from prefect.automations import Automation  # noqa: E402
from prefect.client.schemas.objects import StateType  # noqa: E402
from prefect.events.actions import ChangeFlowRunState  # noqa: E402
from prefect.events.schemas.automations import EventTrigger, Posture  # noqa: E402
from prefect.events.schemas.events import ResourceSpecification  # noqa: E402

CRASH_AUTOMATION = "samgeo: crash silent runs"
RETRY_AUTOMATION = "samgeo: retry crashed runs"
#: Tag of the deployments whose crashed runs are rescheduled (deployments/prefect.yaml).
RECOVER_TAG = "samgeo-recover"
_FINAL = ("Completed", "Failed", "Cancelled", "Crashed")


def recovery_automations(silence_seconds: float = 60) -> list[Automation]:
    """The two automations (not yet created); ``silence_seconds`` must exceed the heartbeat period."""
    per_run = {"prefect.resource.id"}
    crash = Automation(
        name=CRASH_AUTOMATION,
        description="A flow run silent (no heartbeat, no final state) for too long is marked Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat", "prefect.flow-run.Running"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in _FINAL)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each=per_run,
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=silence_seconds),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {silence_seconds:.0f} s: its worker or process died")],
    )
    retry = Automation(
        name=RETRY_AUTOMATION,
        description=f"A crashed run tagged {RECOVER_TAG} is scheduled again (the flow caps its attempts).",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.role": "tag",
                                                 "prefect.resource.id": f"prefect.tag.{RECOVER_TAG}"}),
            for_each=per_run,
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(seconds=0),
        ),
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry",
                                    message="rescheduled after a crash")],
    )
    return [crash, retry]


def ensure_automations(silence_seconds: float = 60) -> dict[str, str]:
    """Create each recovery automation the API (``PREFECT_API_URL``) does not have yet.

    Returns:
        Automation name -> ``created`` or ``exists``.
    """
    from prefect.client.orchestration import get_client

    done = {}
    with get_client(sync_client=True) as client:
        for automation in recovery_automations(silence_seconds):
            if client.read_automations_by_name(name=automation.name):
                done[automation.name] = "exists"
                continue
            automation.create()
            done[automation.name] = "created"
    return done


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Create the crash-recovery automations on the Prefect server.")
    parser.add_argument("--silence-seconds", type=float, default=60,
                        help="mark a run crashed after this long without a heartbeat (default 60; heartbeats every 30 s)")
    args = parser.parse_args()
    for name, what in ensure_automations(args.silence_seconds).items():
        print(f"{name}: {what}")
