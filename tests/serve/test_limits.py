"""Connection limits of ``samgeo-pipeline serve`` (:mod:`samgeo_pipeline.serve.limits`), without a server."""

from __future__ import annotations

import socket

import pytest

from samgeo_pipeline.serve.limits import ConnectionBudget, HeadDeadlineReader


def test_budget_counts_per_client_and_in_all() -> None:
    budget = ConnectionBudget(total=3, per_client=2)
    assert budget.take("a") and budget.take("a")
    assert not budget.take("a")  # a's cap
    assert budget.take("b")
    assert not budget.take("c")  # the total, though c has none
    budget.give_back("a")
    assert budget.take("a") and not budget.take("b")


def test_a_refused_take_counts_nothing() -> None:
    budget = ConnectionBudget(total=2, per_client=1)
    assert budget.take("a") and not budget.take("a") and not budget.take("a")
    budget.give_back("a")  # the one taken: a is forgotten
    assert budget.take("b") and budget.take("a")


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_reader_reads_what_arrived(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    reader = HeadDeadlineReader(server, idle_timeout=5.0)
    client.sendall(b"GET / HTTP/1.1\r\n")
    buffer = bytearray(64)
    assert buffer[: reader.readinto(buffer)] == b"GET / HTTP/1.1\r\n"


def test_a_passed_deadline_refuses_even_when_bytes_wait(pair: tuple[socket.socket, socket.socket]) -> None:
    """The head's deadline covers all its reads: a client that drips a byte now and then is cut off."""
    client, server = pair
    reader = HeadDeadlineReader(server, idle_timeout=5.0)
    reader.start_deadline(-1.0)  # already passed
    client.sendall(b"G")
    with pytest.raises(TimeoutError, match="request head not complete in time"):
        reader.readinto(bytearray(8))
    reader.clear_deadline()
    assert server.gettimeout() == 5.0
    assert reader.readinto(bytearray(8)) == 1


def test_reads_wait_no_longer_than_the_idle_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    _, server = pair
    reader = HeadDeadlineReader(server, idle_timeout=0.05)
    with pytest.raises(TimeoutError):
        reader.readinto(bytearray(8))
