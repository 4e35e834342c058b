"""The courier: batches in order, retries with backoff, spools what the store refuses."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from unmix.tracking.courier import Courier, backoff_s, next_batch
from unmix.tracking.spool import Spool, read_spool


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Store:
    """Takes batches while `up`; records what it took."""

    def __init__(self) -> None:
        self.up = True
        self.batches: list[list[tuple]] = []

    def send(self, batch: list[tuple]) -> None:
        if not self.up:
            raise ConnectionError("Connection refused\nsecond line")
        self.batches.append(batch)

    def steps(self) -> list[int]:
        return [call[2] for batch in self.batches for call in batch if call[0] == "metrics"]


def metrics(step: int) -> tuple:
    return ("metrics", {"train/l1": 1.0 / step}, step, 1000 + step)


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff_s(n, first=1.0, cap=30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_next_batch_takes_leading_metrics_or_one_other_call() -> None:
    calls = collections.deque([metrics(1), metrics(2), ("image", None, "k", 2), metrics(3)])
    assert next_batch(calls) == [metrics(1), metrics(2)]
    assert next_batch(collections.deque([("image", None, "k", 2), metrics(3)])) == [("image", None, "k", 2)]


def courier(store: Store, tmp_path: Path, clock: FakeClock, events: list) -> Courier:
    return Courier(
        store.send,
        Spool.create(tmp_path, "sqlite:///x.db", "run1"),
        every_s=5.0,
        clock=clock,
        on_outage=lambda reason: events.append(("outage", reason)),
        on_recovery=lambda waited: events.append(("recovered", waited)),
    )


def test_calls_go_out_at_most_every_interval_in_one_batch(tmp_path: Path) -> None:
    store, clock, events = Store(), FakeClock(), []
    c = courier(store, tmp_path, clock, events)
    c.add(metrics(1))
    assert c.due_in() == 0.0  # the first call goes at once
    assert c.deliver()
    for step in (2, 3, 4):
        clock.now += 1.0
        c.add(metrics(step))
    assert c.due_in() == pytest.approx(2.0)  # 5 s after the last send
    clock.now += 2.0
    assert c.deliver()
    assert [len(batch) for batch in store.batches] == [1, 3]
    assert c.due_in() is None and events == []


def test_an_outage_spools_retries_with_backoff_and_delivers_everything_in_order(tmp_path: Path) -> None:
    store, clock, events = Store(), FakeClock(), []
    c = courier(store, tmp_path, clock, events)
    c.add(metrics(1))
    c.deliver()
    store.up = False
    c.add(metrics(2))
    c.add(("image", __import__("numpy").zeros((2, 2, 3), "uint8"), "reconstructions/valid", 2))
    assert not c.deliver()
    assert events == [("outage", "Connection refused")]
    assert c.due_in() == pytest.approx(1.0)  # first backoff
    (spool_file,) = tmp_path.glob("*.jsonl")
    _, delivered, spooled = read_spool(spool_file)
    assert delivered == 0 and [call[0] for call in spooled] == ["metrics", "image"]

    c.add(metrics(3))  # arrives during the outage: straight to disk too
    clock.now += 1.0
    assert not c.deliver()
    assert c.due_in() == pytest.approx(2.0)  # second backoff
    assert len(read_spool(spool_file)[2]) == 3

    store.up = True
    clock.now += 2.0
    assert c.deliver()
    assert store.steps() == [1, 2, 3]
    assert [batch[0][0] for batch in store.batches] == ["metrics", "metrics", "image", "metrics"]
    assert events[-1] == ("recovered", 3)
    assert not spool_file.exists() and not spool_file.with_suffix("").exists()


def test_a_partial_delivery_is_marked_in_the_spool(tmp_path: Path) -> None:
    store, clock, events = Store(), FakeClock(), []
    c = courier(store, tmp_path, clock, events)
    store.up = False
    c.add(metrics(1))
    c.add(("end", "FINISHED"))
    assert not c.deliver()
    store.up = True
    original_send = store.send

    def one_then_down(batch: list[tuple]) -> None:
        original_send(batch)
        store.up = False

    c._send = one_then_down
    assert not c.deliver()
    (spool_file,) = tmp_path.glob("*.jsonl")
    _, delivered, left = read_spool(spool_file)
    assert delivered == 1 and left == [("end", "FINISHED")]


def test_deliver_until_gives_up_at_the_deadline_and_keeps_the_calls(tmp_path: Path) -> None:
    store, events = Store(), []
    store.up = False
    c = Courier(
        store.send, Spool.create(tmp_path, "u", "r"), every_s=0.0, on_outage=lambda reason: events.append(reason)
    )
    c.add(metrics(1))
    import time

    started = time.monotonic()
    assert not c.deliver_until(started + 2.5)  # tries at 0, 1, 2 (+ backoff 1, 2): the next would be past
    assert time.monotonic() - started < 2.5
    assert c.failures == 2 and len(c.pending) == 1 and len(events) == 1
    assert list(tmp_path.glob("*.jsonl"))
