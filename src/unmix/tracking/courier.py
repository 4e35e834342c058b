"""Getting a tracking worker's calls into the store: in batches, in order, with retries.

The courier holds the calls not yet in the store. It sends them at most every `every_s`
seconds (one store round trip for all the metrics queued since), so a worker costs the
training a few milliseconds every few seconds rather than one every epoch. When a send
fails (the server is down, the database locked) the calls stay in order, go to a spool
on disk, and the next try waits twice as long as the last, up to `max_backoff_s`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from unmix.errors import first_line
from unmix.tracking.spool import Spool

# A batch waits at most this long after the previous send: with the send itself, each
# epoch's metrics reach the store within ~10 s of the epoch's end.
DELIVER_EVERY_S = 5.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


def backoff_s(failures: int, first: float = FIRST_BACKOFF_S, cap: float = MAX_BACKOFF_S) -> float:
    """Seconds before the next try after `failures` failed ones in a row: 1, 2, 4, … up to `cap`."""
    return min(cap, first * 2 ** max(0, failures - 1))


def next_batch(calls: collections.deque) -> list[tuple]:
    """The calls one store round trip takes from the head: all its leading metrics calls, or one other call."""
    if calls[0][0] != "metrics":
        return [calls[0]]
    batch = []
    for call in calls:
        if call[0] != "metrics":
            break
        batch.append(call)
    return batch


class Courier:
    """Sends calls with `send(batch)` (which raises when the store fails them), keeping order.

    `on_outage(reason)` is called when sends start failing, `on_recovery(n)` when the
    store takes calls again after an outage (n calls had waited).
    """

    def __init__(
        self,
        send: Callable[[list[tuple]], None],
        spool: Spool,
        *,
        every_s: float = DELIVER_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        on_outage: Callable[[str], None] = lambda reason: None,
        on_recovery: Callable[[int], None] = lambda waited: None,
    ) -> None:
        self.pending: collections.deque = collections.deque()
        self.spool = spool
        self.delivered = 0  # calls in the store, in order
        self.failures = 0
        self.last_error: str | None = None
        self._send, self._clock, self._every_s = send, clock, every_s
        self._on_outage, self._on_recovery = on_outage, on_recovery
        self._next_send = clock()  # the first call goes out at once
        self._spooled = 0  # calls written to the spool (the first ones of self.delivered + pending)
        self._spool_base = 0  # self.delivered when the spool was started

    def add(self, call: tuple) -> None:
        self.pending.append(call)
        if self._spooled:
            self._write_to_spool(call)

    def due_in(self) -> float | None:
        """Seconds until the next send is due, or None with nothing to send."""
        if not self.pending:
            return None
        return max(0.0, self._next_send - self._clock())

    def deliver(self) -> bool:
        """Send every pending call, in order, as far as the store takes them; True when none is left."""
        waited = len(self.pending) if self.failures else 0
        started = self._clock()
        while self.pending:
            batch = next_batch(self.pending)
            try:
                self._send(batch)
            except Exception as error:  # noqa: BLE001 - any failure: keep the calls, try later
                self._failed(error)
                return False
            for _ in batch:
                self.pending.popleft()
            self.delivered += len(batch)
            if self._spooled:
                self.spool.mark_delivered(self.delivered - self._spool_base)
                if not self.pending:
                    self._spooled = 0
        if self.failures:
            self.failures, self.last_error = 0, None
            self._on_recovery(waited)
        # Counted from the start of this send: a slow one (an image, a model) does not push
        # the next epoch's metrics further back.
        self._next_send = started + self._every_s
        return True

    def deliver_until(self, deadline: float) -> bool:
        """Send everything, retrying with backoff until `deadline` (a clock time); True when all is in."""
        while not self.deliver():
            wait = self._next_send - self._clock()
            if self._clock() + max(wait, 0.0) > deadline:
                return False
            time.sleep(max(wait, 0.0))
        return True

    def _failed(self, error: Exception) -> None:
        self.failures += 1
        self.last_error = first_line(error)
        if self.failures == 1:
            self._on_outage(self.last_error)
        if not self._spooled:
            # From now on every call waits on disk too: nothing is lost if this process dies.
            self._spool_base = self.delivered
            for call in self.pending:
                self._write_to_spool(call)
        self._next_send = self._clock() + backoff_s(self.failures)

    def _write_to_spool(self, call: tuple) -> None:
        self.spool.append(call)
        self._spooled += 1
