"""Connection limits of ``samgeo-pipeline serve``: a budget of open connections, a head deadline.

Slow clients must not be able to hold the server: a connection that has not yet sent a whole
request head holds only a place in :class:`ConnectionBudget` (bounded in all and per client
address), never one of the slots that answer requests, and :class:`HeadDeadlineReader` closes it
when its head has not arrived in time, however steadily it drips bytes. Standard library only.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class ConnectionBudget:
    """Open connections: at most ``total`` in all and ``per_client`` from one client address."""

    def __init__(self, total: int, per_client: int) -> None:
        self._lock = threading.Lock()
        self._by_client: Counter[str] = Counter()
        self._total = total
        self._per_client = per_client

    def take(self, client: str) -> bool:
        """Count a new connection from ``client``; False (nothing counted) when a limit is reached."""
        with self._lock:
            if self._by_client[client] >= self._per_client or self._by_client.total() >= self._total:
                return False
            self._by_client[client] += 1
            return True

    def give_back(self, client: str) -> None:
        """Forget one connection of ``client`` (taken with :meth:`take`)."""
        with self._lock:
            self._by_client[client] -= 1
            if self._by_client[client] <= 0:
                del self._by_client[client]


class HeadDeadlineReader(io.RawIOBase):
    """Raw reads from a socket, each bounded by the idle timeout and, while set, by a deadline.

    The deadline covers a whole request head however many reads it takes: a client that sends a
    byte now and then is cut off when it passes, where a per-read timeout would wait forever.
    """

    def __init__(self, sock: socket.socket, idle_timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self._idle_timeout = idle_timeout
        self._deadline: float | None = None

    def readable(self) -> bool:
        return True

    def start_deadline(self, seconds: float) -> None:
        """The next request head must be complete within ``seconds`` from now."""
        self._deadline = time.monotonic() + seconds

    def clear_deadline(self) -> None:
        """The head is in: reads and writes wait up to the idle timeout again."""
        self._deadline = None
        self._sock.settimeout(self._idle_timeout)

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Read what the socket has, waiting no longer than the idle timeout and the deadline allow.

        Raises:
            TimeoutError: the deadline has passed, or nothing came in time.
        """
        timeout = self._idle_timeout
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError("request head not complete in time")
        self._sock.settimeout(timeout)
        return self._sock.recv_into(buffer)


__all__ = ["ConnectionBudget", "HeadDeadlineReader"]
