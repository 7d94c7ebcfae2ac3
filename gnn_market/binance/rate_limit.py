"""Weight pacing: keep each host's request weight under Binance's per-IP limit.

Binance counts the *weight* of every request in fixed one-minute windows per
IP and answers 429 (then 418, a ban) when a window goes over the limit. A
:class:`WeightLimiter` is the local view of one such budget:

* every request reserves its documented weight in a sliding window before it
  is sent, and waits rather than exceed ``limit * safety``;
* the ``X-MBX-USED-WEIGHT-1M`` response header (read case-insensitively by
  :func:`used_weight_header`) corrects the local count when other programs
  share the IP;
* a 429 pauses the whole host for ``Retry-After`` seconds (:meth:`WeightLimiter.pause`).

The same class paces the separate ``fundingRate`` budget (500 calls / 5 min),
with a weight of 1 per call.
"""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import Any


class WeightLimiter:
    """Sliding-window budget of request weight for one host.

    A request reserves its weight before it is sent; reservations expire after
    ``window`` (+5% slack for network delay, so the server's fixed windows can
    never see more than the budget). The server's used-weight header, when
    higher than the local count (other clients on the IP), blocks until the
    server's window rolls over.
    """

    def __init__(self, limit: int, window: float, safety: float, name: str) -> None:
        self.name = name
        self.window = window
        self.safety = safety
        self.limit = limit
        self._ledger: deque[tuple[float, int]] = deque()
        self._server_used = 0
        self._server_window = -1
        self._paused_until = 0.0
        self._cond = threading.Condition()
        self.peak_reserved = 0

    @property
    def budget(self) -> int:
        return max(1, int(self.limit * self.safety))

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self.limit = int(limit)
            self._cond.notify_all()

    def _used(self, now: float) -> int:
        horizon = now - self.window * 1.05
        while self._ledger and self._ledger[0][0] <= horizon:
            self._ledger.popleft()
        local = sum(w for _, w in self._ledger)
        server = self._server_used if int(time.time() // self.window) == self._server_window else 0
        return max(local, server)

    def acquire(self, weight: int) -> None:
        """Block until ``weight`` fits in the budget, then reserve it."""
        weight = min(weight, self.budget)  # a single request larger than the budget still goes
        with self._cond:
            while True:
                now = time.monotonic()
                wait = self._paused_until - now
                if wait <= 0:
                    used = self._used(now)
                    if used + weight <= self.budget:
                        if weight:
                            self._ledger.append((now, weight))
                        self.peak_reserved = max(self.peak_reserved, used + weight)
                        return
                    wait = self._ledger[0][0] + self.window * 1.05 - now if self._ledger else 0.05
                    if self._server_used > self.budget:
                        wait = min(wait, self.window - time.time() % self.window) if self._ledger else \
                            self.window - time.time() % self.window
                self._cond.wait(max(0.005, min(wait, 1.0)))

    def observe(self, used: int | None) -> None:
        """Record the server's used weight from a response header."""
        if used is None:
            return
        with self._cond:
            window = int(time.time() // self.window)
            if window != self._server_window or used > self._server_used:
                self._server_window, self._server_used = window, used

    def pause(self, seconds: float) -> None:
        """Stop every request on this host for ``seconds`` (after a 429)."""
        with self._cond:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)


def used_weight_header(headers: Any) -> int | None:
    """The server's ``X-MBX-USED-WEIGHT-1M`` count from response headers, or None."""
    if headers is None:
        return None
    for key, value in headers.items():  # case-insensitive, any interval letter case
        if re.fullmatch(r"x-mbx-used-weight-1m", key, flags=re.IGNORECASE):
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None
