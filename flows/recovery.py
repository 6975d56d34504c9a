"""Crash recovery for a fleet of workers: two Prefect automations, created once per server.

A worker or machine that dies (``kill -9``, power loss) cannot report its flow run's end, so the
run would stay ``Running`` for good. With ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` set in the flow
process (the deployments set 30 s, Prefect's minimum), each deployment run emits a
``prefect.flow-run.heartbeat`` event every 30 s, and:

1. ``samgeo: crash silent runs`` (proactive): a flow run whose submission (``Pending``), start
   (``Running``) or heartbeat is followed by neither a heartbeat, a start nor a final state within
   ``silence_seconds`` (default 60) is set to ``Crashed``, which also frees its deployment
   concurrency slot. Every state a process can die in is covered: a worker killed while it starts
   the flow process leaves the run ``Pending`` (no heartbeat was ever sent), one killed before
   the first heartbeat leaves it ``Running``. A ``Cancelling`` run ends this watch (automation 3 takes it).
2. ``samgeo: retry crashed runs`` (reactive): a ``Crashed`` run tagged ``samgeo-recover`` (the
   segment deployment's runs) is set back to ``Scheduled``, so any live worker of the pool runs it
   again from the start; the segment flow gives up (``Failed``) when started more than
   ``SAMGEO_MAX_ATTEMPTS`` times. The new attempt removes the temporary files the dead one left in
   its output folders (:func:`samgeo_pipeline.io.folders.remove_partials`, under the folder's lock).
3. ``samgeo: cancel silent cancelling runs`` (proactive): a run left ``Cancelling`` (its worker,
   which would stop the process and report ``Cancelled``, died) with no final state within
   ``silence_seconds`` is set to ``Cancelled``: someone asked to stop it, so it is not retried,
   and its deployment slot is freed.

A slot of the global concurrency limit ``gpu`` is a lease the holding process renews; the flows
take it for :data:`flows.gpu_slots.GPU_LEASE_SECONDS` (60 s, the API's minimum), so a dead
holder's slot is free again within that time plus the server's lease check (15 s), whatever
became of its run.

Create them with ``python flows/recovery.py`` (idempotent: an existing automation of one of these
names is left as it is when its rules are these, and updated when they are an older version's).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

CRASH_AUTOMATION = "samgeo: crash silent runs"
RETRY_AUTOMATION = "samgeo: retry crashed runs"
#: Tag of the deployments whose crashed runs are rescheduled (deployments/prefect.yaml).
RECOVER_TAG = "samgeo-recover"
CANCEL_AUTOMATION = "samgeo: cancel silent cancelling runs"
_FINAL = ("Completed", "Failed", "Cancelled", "Crashed")
#: A flow run's events that say its process was just alive (or about to start it): ``Retrying`` is
#: the ``Running`` state of a flow that retries.
_ALIVE = ("Pending", "Running", "Retrying")


def recovery_automations(silence_seconds: float = 60) -> list[Automation]:
    """The three automations (not yet created); ``silence_seconds`` must exceed the heartbeat period."""
    per_run = {"prefect.resource.id"}
    final = {f"prefect.flow-run.{s}" for s in _FINAL}
    crash = Automation(
        name=CRASH_AUTOMATION,
        description="A flow run silent (no heartbeat, no start, no final state) for too long is marked Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in _ALIVE)},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Cancelling", *final,
                    *(f"prefect.flow-run.{s}" for s in _ALIVE if s != "Pending")},
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
    cancel = Automation(
        name=CANCEL_AUTOMATION,
        description="A flow run left Cancelling (its worker died) is marked Cancelled, and not retried.",
        trigger=EventTrigger(
            after={"prefect.flow-run.Cancelling"},
            expect=final,
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each=per_run,
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=silence_seconds),
        ),
        actions=[ChangeFlowRunState(state=StateType.CANCELLED,
                                    message=f"still cancelling after {silence_seconds:.0f} s: its worker died")],
    )
    return [crash, retry, cancel]


def ensure_automations(silence_seconds: float = 60) -> dict[str, str]:
    """Create each recovery automation the API (``PREFECT_API_URL``) does not have yet, and bring
    one whose trigger or actions differ (an older version of these rules) up to date.

    Returns:
        Automation name -> ``created``, ``updated`` or ``exists``.
    """
    from prefect.automations import AutomationCore
    from prefect.client.orchestration import get_client

    done = {}
    with get_client(sync_client=True) as client:
        for automation in recovery_automations(silence_seconds):
            existing = client.read_automations_by_name(name=automation.name)
            if not existing:
                automation.create()
                done[automation.name] = "created"
            elif _same_rules(existing[0], automation):
                done[automation.name] = "exists"
            else:
                rules = AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"}))
                client.update_automation(existing[0].id, rules)
                done[automation.name] = "updated"
    return done


def _same_rules(a: Automation, b: Automation) -> bool:
    """Whether two automations have the same trigger and actions (ids, other fields and the order
    of event-name sets aside)."""
    def rules(x: Automation) -> Any:
        return _sorted_lists(x.model_dump(mode="json", include={"trigger", "actions"}, exclude={"trigger": {"id"}}))

    return rules(a) == rules(b)


def _sorted_lists(value: Any) -> Any:
    """``value`` with every list of strings sorted (sets come back from the API in any order)."""
    if isinstance(value, dict):
        return {k: _sorted_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted_lists(v) for v in value]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    return value


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Create the crash-recovery automations on the Prefect server.")
    parser.add_argument("--silence-seconds", type=float, default=60,
                        help="mark a run crashed after this long without a heartbeat (default 60; heartbeats every 30 s)")
    args = parser.parse_args()
    for name, what in ensure_automations(args.silence_seconds).items():
        print(f"{name}: {what}")
