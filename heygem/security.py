"""Guards at the server's door: password guessing is slowed down.

Answers like the rest of the API, ``{"error": "<reason>"}``; mounted by ``heygem.server``.
"""
from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from heygem.api import error_response

log = logging.getLogger(__name__)

__all__ = ["LoginThrottle"]


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Counts wrong passwords per client address and locks an address out after too many.

    After ``free_tries`` wrong passwords in a row, the address is locked out for ``first_lockout`` seconds;
    each further wrong try (once the lockout has passed) doubles the lockout, up to ``longest_lockout``.
    While locked out, every request from the address is refused, the right password included. A right
    password clears the count, and so does a quiet ``longest_lockout`` since the last wrong one. At most
    ``max_addresses`` addresses are remembered; the one idle longest is forgotten first. ``clock`` gives
    seconds (tests pass a fake one).
    """

    free_tries: int = 5
    first_lockout: float = 2.0
    longest_lockout: float = 900.0
    max_addresses: int = 10_000
    clock: Callable[[], float] = time.monotonic
    # Touched only from the event loop's thread (the auth middleware is async), so no lock is needed.
    _table: OrderedDict[str, _Failures] = field(default_factory=OrderedDict, init=False, repr=False)

    def locked_for(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it is not locked out."""
        entry = self._table.get(address)
        return max(0.0, entry.locked_until - self.clock()) if entry else 0.0

    def failed(self, address: str) -> float:
        """Count a wrong password from ``address``; returns the lockout it starts, in seconds (0: none yet)."""
        now = self.clock()
        entry = self._table.pop(address, None) or _Failures()
        if now - entry.last > self.longest_lockout:
            entry = _Failures()
        entry.count += 1
        entry.last = now
        self._table[address] = entry  # newest at the end: the oldest are forgotten first
        while len(self._table) > self.max_addresses:
            self._table.popitem(last=False)
        if entry.count < self.free_tries:
            return 0.0
        lockout = min(self.first_lockout * 2 ** (entry.count - self.free_tries), self.longest_lockout)
        entry.locked_until = now + lockout
        log.warning("%s: %d wrong passwords in a row; locked out for %.0f s", address, entry.count, lockout)
        return lockout

    def succeeded(self, address: str) -> None:
        self._table.pop(address, None)

    def refusal(self, address: str, seconds: float):
        """The 429 answer to a locked-out address, with ``Retry-After``."""
        wait = max(1, math.ceil(seconds))
        response = error_response(429, f"too many wrong passwords from {address}; try again in {wait} s")
        response.headers["Retry-After"] = str(wait)
        return response
