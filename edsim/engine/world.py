"""World: one SimPy environment, named seeded random streams, and the nodes of a run.

Each component draws from its own stream (``world.rng("network")``), seeded from the run's seed and the
stream's name, so adding a component never shifts the numbers another one sees.
"""
from __future__ import annotations

import gc
import hashlib
import numbers
import random
from contextlib import contextmanager
from heapq import heappush

import simpy
from simpy.events import NORMAL

from .registry import Registry


@contextmanager
def fewer_collections(threshold: int = 200_000):
    """Run the cyclic garbage collector less often while the simulation runs. A run allocates millions of
    short-lived objects (messages, batches, timers) and Python's default threshold (700 allocations) starts a
    collection every few events, a tenth of the run's time; what the model leaves in cycles is freed all the
    same, later. Python's own setting is restored afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(max(threshold, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


class _NullHistory:
    """Stands in when nobody records: every recording call does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: 0


class Timer(simpy.Event):
    """A callback at a future time that can be cancelled (SimPy events cannot be withdrawn: a cancelled timer
    fires and does nothing). It is the model's commonest event (every message, every linger and timeout), so
    it is one already-triggered SimPy event that carries its own callback, scheduled as a Timeout would be."""

    __slots__ = ("fn", "args", "cancelled")

    def __init__(self, env, delay, fn, args):
        if delay < 0:
            raise ValueError(f"delay={delay!r} is not allowed: a timer cannot fire in the past")
        self.env = env
        self.callbacks = [Timer._fire]
        self._value = None
        self._ok = True
        self.fn = fn
        self.args = args
        self.cancelled = False
        heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), self))   # env.schedule, inlined

    def _fire(self):
        if not self.cancelled:
            self.fn(*self.args)

    def cancel(self):
        self.cancelled = True


class World:
    def __init__(self, seed: int = 0, history=None):
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed={seed!r} is not allowed: seed must be a whole number")
        self.seed = int(seed)
        self.env = simpy.Environment()
        self.history = history if history is not None else _NullHistory()
        self.nodes: dict[str, object] = {}
        self.names = Registry()           # what each name means: brokers, clients, services, instances
        self._owner = None                # the service instance whose clients are being created
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
        return Timer(self.env, delay, fn, args)

    def add(self, node):
        if node.name in self.nodes:
            raise ValueError(f"a node named {node.name!r} already exists")
        if self._owner is not None:
            self.names.add_part(node.name, self._owner)
        else:
            self.names.add(node.name, node, getattr(node, "kind", "node"))
        self.nodes[node.name] = node
        return node

    @contextmanager
    def owned_by(self, instance: str):
        """Nodes created inside this block are clients of service instance ``instance`` (parts of its process)."""
        before, self._owner = self._owner, instance
        try:
            yield
        finally:
            self._owner = before

    def run(self, until=None):
        self.env.run(until=until)
