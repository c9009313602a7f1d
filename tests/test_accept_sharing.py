"""Processes sharing a listening socket take turns: the busier one leaves new
connections to the others (plantcdn.acceptshare), with an injected clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from plantcdn.acceptshare import MAX_YIELDS, YIELD_SECONDS, AcceptBoard, share_accepts


class _Ops:
    def __init__(self) -> None:
        self.channels: set[object] = set()


class _Port:
    """Just what share_accepts touches of a twisted.internet.tcp.Port."""

    def __init__(self) -> None:
        self.factory: Any = type("Site", (), {"ops": _Ops()})()
        self.connected, self.disconnecting, self.reading = True, False, True
        self.numberAccepts = 100
        self.accepted = 0

    def doRead(self) -> None:  # noqa: N802
        assert self.numberAccepts == 1
        self.accepted += 1
        self.factory.ops.channels.add(object())

    def stopReading(self) -> None:  # noqa: N802
        self.reading = False

    def startReading(self) -> None:  # noqa: N802
        self.reading = True


def test_board_publishes_counts_across_slots() -> None:
    board = AcceptBoard.create(3)
    board.publish(0, 5)
    board.publish(2, 1)
    assert board.fewest_elsewhere(0) == 0
    board.publish(1, 4)
    assert board.fewest_elsewhere(0) == 1
    assert board.fewest_elsewhere(2) == 4


def test_the_busier_process_yields_and_the_idle_one_accepts() -> None:
    board, clock = AcceptBoard.create(2), Clock()
    busy, idle = _Port(), _Port()
    share_accepts(busy, clock, board, 0)
    share_accepts(idle, clock, board, 1)
    busy.doRead()  # both hold nothing: accept one
    assert busy.accepted == 1
    busy.doRead()  # now it holds more than the other: leave it to them
    assert (busy.accepted, busy.reading) == (1, False)
    idle.doRead()
    assert idle.accepted == 1
    clock.advance(YIELD_SECONDS)
    assert busy.reading


def test_a_process_that_never_takes_its_turn_cannot_block_accepts() -> None:
    """A stuck or dead process's low count makes the others wait a little, never forever."""
    board, clock = AcceptBoard.create(2), Clock()
    port = _Port()
    share_accepts(port, clock, board, 0)
    port.doRead()
    for _ in range(MAX_YIELDS):
        port.doRead()
        clock.advance(YIELD_SECONDS)
    port.doRead()
    assert port.accepted == 2


def test_a_closed_port_is_not_read_again() -> None:
    board, clock = AcceptBoard.create(2), Clock()
    port = _Port()
    share_accepts(port, clock, board, 0)
    port.doRead()
    port.doRead()
    port.connected = False
    clock.advance(YIELD_SECONDS)
    assert not port.reading
