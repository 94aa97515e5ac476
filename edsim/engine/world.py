"""World: one SimPy environment, named seeded random streams, and the nodes of a run.

Each component draws from its own stream (``world.rng("network")``), seeded from the run's seed and the
stream's name, so adding a component never shifts the numbers another one sees.
"""
from __future__ import annotations

import hashlib
import random

import simpy


class _NullHistory:
    """Stands in when nobody records: every recording call does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: 0


class Timer:
    """A callback at a future time that can be cancelled (SimPy events cannot be withdrawn)."""

    __slots__ = ("cancelled",)

    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class World:
    def __init__(self, seed: int = 0, history=None):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed={seed!r} is not allowed: seed must be a whole number")
        self.seed = seed
        self.env = simpy.Environment()
        self.history = history if history is not None else _NullHistory()
        self.nodes: dict[str, object] = {}
        self._streams: dict[str, random.Random] = {}
        self.network = None  # set by Network(world)

    @property
    def now(self) -> float:
        return self.env.now

    def rng(self, name: str) -> random.Random:
        """The random stream called ``name``; the same name always gives the same stream."""
        stream = self._streams.get(name)
        if stream is None:
            digest = hashlib.sha256(f"{self.seed}/{name}".encode()).digest()
            stream = self._streams[name] = random.Random(int.from_bytes(digest[:8], "big"))
        return stream

    def call_later(self, delay: float, fn, *args) -> Timer:
        """Run ``fn(*args)`` after ``delay`` simulated seconds unless the returned Timer is cancelled."""
        timer = Timer()
        event = self.env.timeout(delay)
        event.callbacks.append(lambda _e: timer.cancelled or fn(*args))
        return timer

    def add(self, node):
        if node.name in self.nodes:
            raise ValueError(f"a node named {node.name!r} already exists")
        self.nodes[node.name] = node
        return node

    def run(self, until=None):
        self.env.run(until=until)
