"""Retry backoff as Kafka's clients do it since 3.7 (KIP-580).

``retry.backoff.ms`` is only the first wait: each further failure doubles it, up to ``retry.backoff.max.ms``
(1 s), and every wait is scaled by a random factor in [0.8, 1.2) so that clients that failed together do not
retry together. The cap applies after the jitter, as in Java's ``ExponentialBackoff.backoff``; when the maximum
is not above the initial wait the backoff is constant and unjittered.

``RequestState`` is Java's ``RequestState`` (the consumer's request managers): one request of its kind in flight
at a time, the next no sooner than the backoff after the last answer, the attempts reset by a success.
"""
from __future__ import annotations

from math import log

MULTIPLIER = 2      # CommonClientConfigs.RETRY_BACKOFF_EXP_BASE
JITTER = 0.2        # CommonClientConfigs.RETRY_BACKOFF_JITTER


class ExponentialBackoff:
    def __init__(self, initial: float, maximum: float, rng, multiplier: int = MULTIPLIER, jitter: float = JITTER):
        self.initial = min(initial, maximum)
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = jitter
        self.rng = rng
        self.exp_max = log(maximum / initial) / log(multiplier) if maximum > initial > 0 else 0.0

    def __call__(self, attempts: int) -> float:
        """The wait after ``attempts`` earlier failures (0 for the first retry)."""
        if self.exp_max == 0:
            return self.initial
        term = self.initial * self.multiplier ** min(attempts, self.exp_max)
        factor = self.rng.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        return min(term * factor, self.maximum)


class RequestState:
    """One request at a time, backing off exponentially between failed attempts."""

    def __init__(self, backoff: ExponentialBackoff):
        self.backoff = backoff
        self.reset()

    def reset(self):
        self.in_flight = False
        self.attempts = 0
        self.received = None        # when the last answer came (None: never)
        self.wait = 0.0             # the backoff that runs from it

    def remaining(self, now: float) -> float:
        """Seconds until another request may go (0 if it may go now; a timer set for the rest lands within
        rounding of it, so a nanosecond counts as nothing)."""
        if self.received is None:
            return 0.0
        left = self.wait - (now - self.received)
        return left if left > 1e-9 else 0.0

    def can_send(self, now: float) -> bool:
        return not self.in_flight and self.remaining(now) <= 0

    def sent(self):
        self.in_flight = True

    def succeeded(self, now: float):
        self.in_flight, self.received = False, now
        self.attempts, self.wait = 0, self.backoff(0)

    def failed(self, now: float):
        self.in_flight, self.received = False, now
        self.wait = self.backoff(self.attempts)
        self.attempts += 1
