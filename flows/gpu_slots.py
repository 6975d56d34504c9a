"""The GPU of a worker process and the fleet's global ``gpu`` concurrency limit: one image at a time
on this process's GPU, and at most the limit's slots across the fleet, each slot a lease that frees
itself a minute after its holder dies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.concurrency.sync import concurrency

#: Name of the global concurrency limit the finetune flow occupies, and the segment flow when asked.
GPU_LIMIT = "gpu"
#: Lease of a slot of that limit, in seconds (the API's minimum): its holder renews it every 45 s,
#: so the slot of a killed holder is free again 60 s after its death (plus the server's 15 s
#: check), not after Prefect's default 300 s.
GPU_LEASE_SECONDS = 60.0


#: Held while an image runs on this process's GPU (``CUDA_VISIBLE_DEVICES`` of the worker).
_GPU_LOCK = threading.Lock()


@contextmanager
def gpu_slot(gpu_limit: str | None) -> Iterator[None]:
    """This process's GPU lock, plus a slot of the global concurrency limit ``gpu_limit`` when given."""
    with _GPU_LOCK:
        if gpu_limit:
            with concurrency(gpu_limit, occupy=1, lease_duration=GPU_LEASE_SECONDS):
                yield
        else:
            yield


def ensure_concurrency_limit(
    name: str, slots: int = 1, logger: logging.Logger | logging.LoggerAdapter | None = None
) -> bool:
    """Create the global concurrency limit ``name`` with ``slots`` slots when it does not exist.

    Returns:
        True when the limit exists (or was created); False when the API refused (the segment stage
        then runs without it, as Prefect does for a missing limit, and a warning says so).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    logger = logger or logging.getLogger(__name__)
    try:
        with get_client(sync_client=True) as client:
            try:
                client.read_global_concurrency_limit_by_name(name)
                return True
            except ObjectNotFound:
                pass
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
                logger.info("created global concurrency limit %r with %d slot(s)", name, slots)
            except ObjectAlreadyExists:
                pass
            return True
    except Exception as exc:  # noqa: BLE001 - the API may refuse; degrade, don't fail the run
        logger.warning("cannot read or create concurrency limit %r (%s: %s); GPU jobs of concurrent runs "
                       "are not serialised", name, type(exc).__name__, exc)
        return False
