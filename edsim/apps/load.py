"""``apps.Load``: the outside world writing to a topic, records arriving at a rate (Poisson), keyed or not.

What arrives is the world's, not the process's: the arrival schedule and which records were acknowledged live in
``ctx.shared`` and survive a crash; a restarted instance sends again what it never saw acknowledged (with
``resend_unacked``), as an application with an outbox would.
"""
from __future__ import annotations

import math

import numpy as np

from ..app.service import Service
from ..clients import KafkaError
from ..configs import ConfigError

TICK = 0.001          # the application hands records to the producer in 1 ms steps


class LoadPlan:
    """The records of a load, made once per run from the ``workload`` random stream: values, keys, arrival
    times; and what became of them (handed to the producer, acknowledged, aborted on purpose)."""

    def __init__(self, ctx, messages, rate, keys):
        world_rng = ctx._instance.world.rng("workload")
        rng = np.random.default_rng(world_rng.getrandbits(64))
        n = messages
        self.arrivals = np.cumsum(rng.exponential(1.0 / rate, n)) if n else np.empty(0)
        self.keys = rng.integers(0, keys, n) if keys else np.full(n, -1, np.int64)
        self.values = ctx._instance.world.history.values.fresh(n)
        self.acked = np.zeros(n, bool)
        self.aborted = np.zeros(n, bool)      # sent in a transaction the application aborted on purpose
        self.handed = 0                       # values handed to the producer so far
        self.started = False
        self.first = int(self.values[0]) if n else 0

    def outcome(self, type_, values):
        """The producer's interceptor: remember what was acknowledged."""
        if type_ == "ok" and len(values):
            mine = values - self.first
            mine = mine[(mine >= 0) & (mine < len(self.acked))]
            self.acked[mine] = True


class _PartitionPlan:
    """The load's records grouped by partition, in arrival order within each: per partition its positions in the
    arrival order, and its values, keys and arrival times, with a cursor of what was handed over."""

    def __init__(self, plan, producer, topic, partitions, parts):
        self.producer, self.topic, self.partitions = producer, topic, partitions
        order = np.argsort(parts.astype(np.uint16) if partitions <= 65536 else parts, kind="stable")  # radix sort
        bounds = np.concatenate(([0], np.cumsum(np.bincount(parts, minlength=partitions)))).tolist()
        self.groups = []
        for p in range(partitions):
            idx = order[bounds[p]:bounds[p + 1]]
            if len(idx):
                self.groups.append([p, idx, plan.values[idx], plan.keys[idx], plan.arrivals[idx], 0])

    def current(self) -> bool:
        """False once the producer knows the topic has more partitions (keys move: it partitions them again)."""
        return self.producer.partition_count(self.topic) == self.partitions

    def take(self, end: int, floor: float):
        """Per partition, its records among the first ``end`` not handed over yet; invoked no earlier than
        ``floor``."""
        out = []
        for group in self.groups:
            p, idx, values, keys, arrivals, lo = group
            hi = int(idx.searchsorted(end))
            if hi > lo:
                times = arrivals[lo:hi]
                if times[0] < floor:
                    times = np.maximum(times, floor)
                out.append((p, values[lo:hi], keys[lo:hi], times))
                group[5] = hi
        return out


class Load(Service):
    """Writes ``messages`` records to ``topic`` at ``rate`` records/s over ``keys`` keys."""

    source = True          # the run's load phase lasts until it has sent everything

    def __init__(self, topic="events", rate=1000, keys=10, messages=3000, record_size=100, producer=None,
                 transaction_size=0, abort_ratio=0.0, resend_unacked=True):
        self.options = dict(topic=topic, rate=rate, keys=keys, messages=messages, record_size=record_size,
                            producer=producer, transaction_size=transaction_size, abort_ratio=abort_ratio,
                            resend_unacked=resend_unacked)
        for name, value in self.options.items():
            setattr(self, name, value)
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"Load topic={topic!r} is not allowed: a non-empty topic name")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ConfigError(f"Load rate={rate!r} is not allowed: records per second, a number > 0")
        for name in ("keys", "messages", "transaction_size"):
            value = self.options[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"Load {name}={value!r} is not allowed: a whole number >= 0")

    def run(self, ctx):
        producer = ctx.producer(self.producer, record_size=self.record_size)
        plan = ctx.shared.get("plan")
        if plan is None:
            plan = ctx.shared["plan"] = LoadPlan(ctx, self.messages, self.rate, self.keys)
            producer.outcome_listeners.append(plan.outcome)
        ctx._service.hooks.topic_used(ctx._service, self.topic)
        if not plan.started:
            yield from ctx._service.hooks.warm_up()        # the run's consumer groups form first
            plan.arrivals += ctx.now
            plan.started = True
        if self.transaction_size:
            yield from self._produce_transactions(ctx, producer, plan)
        else:
            yield from self._produce(ctx, producer, plan)

    def _produce(self, ctx, producer, plan):
        env, n = ctx.env, len(plan.values)
        if plan.handed and self.resend_unacked:       # a restart: what was never acknowledged goes again
            unacked = np.flatnonzero(~plan.acked[:plan.handed])
            if len(unacked):
                producer.send_many(self.topic, plan.values[unacked], plan.keys[unacked],
                                   np.full(len(unacked), env.now))
        arrivals = plan.arrivals
        grouped = self._partition_plan(producer, plan)
        while plan.handed < n:
            step = max(TICK, math.ceil((float(arrivals[plan.handed]) - env.now) / TICK) * TICK)
            yield from ctx.sleep(step)
            end = int(arrivals.searchsorted(env.now, side="right"))
            if end > plan.handed:
                floor = env.now - step        # records that waited for a dead producer were invoked at its return
                if grouped is not None and grouped.current():
                    producer.send_grouped(self.topic, grouped.take(end, floor))
                else:
                    grouped = None
                    sl = slice(plan.handed, end)
                    times = np.maximum(arrivals[sl], floor)
                    producer.send_many(self.topic, plan.values[sl], plan.keys[sl], times)
                plan.handed = end
        while producer.outstanding > 0:
            yield from ctx.sleep(0.05)

    def _partition_plan(self, producer, plan):
        """Keyed records go to partitions the producer can tell in advance: group them once, so that each step
        hands the producer one slice per partition (None for unkeyed records, which stick by batch size)."""
        if not self.keys or not len(plan.values) or plan.handed:
            return None                       # (after a restart the records are sorted step by step)
        partitions = producer.partition_count(self.topic)
        return _PartitionPlan(plan, producer, self.topic, partitions, producer.partitions_of(self.topic, plan.keys))

    def _produce_transactions(self, ctx, producer, plan):
        """Write in transactions of ``transaction_size`` records and abort a share ``abort_ratio`` of them; after a
        crash initialise again (fencing nothing but its own past) and, with ``resend_unacked``, send again what no
        committed transaction carried."""
        env, n = ctx.env, len(plan.values)
        size, rng = self.transaction_size, ctx._instance.world.rng("workload/aborts")
        backlog = np.empty(0, np.int64)       # values to send again after a crash
        in_txn = []                           # value arrays of the open transaction
        while True:
            try:
                if producer.txn.state in ("uninitialized", "fatal_error"):
                    in_txn = []
                    yield from producer.init_transactions()
                    if self.resend_unacked:
                        backlog = np.flatnonzero(~plan.acked[:plan.handed] & ~plan.aborted[:plan.handed])
                sent = sum(len(v) for v in in_txn)
                if plan.handed >= n and not len(backlog) and not in_txn:
                    break
                if producer.txn.state == "ready":
                    producer.begin_transaction()
                room = size - sent
                if len(backlog):
                    values, backlog = plan.values[backlog[:room]], backlog[room:]
                    times = np.full(len(values), env.now)
                elif plan.handed < n:
                    step = max(TICK, np.ceil((plan.arrivals[plan.handed] - env.now) / TICK) * TICK)
                    yield from ctx.sleep(step)
                    end = int(np.searchsorted(plan.arrivals, env.now, side="right"))
                    sl = slice(plan.handed, end)
                    times = np.maximum(plan.arrivals[sl], env.now - step)
                    values = plan.values[sl][:room]
                    times = times[:room]
                    plan.handed += len(values)
                else:
                    values = plan.values[:0]
                if len(values):
                    producer.send_many(self.topic, values, plan.keys[values - plan.first], times)
                    in_txn.append(values)
                    sent += len(values)
                if sent >= size or (plan.handed >= n and not len(backlog) and sent):
                    if rng.random() < self.abort_ratio:
                        # the records are written first (something goes wrong after), so the aborted
                        # records are in the log, where read_uncommitted consumers can see them
                        yield from producer.flush()
                        yield from producer.abort_transaction()
                        for v in in_txn:
                            plan.aborted[v - plan.first] = True
                    else:
                        yield from producer.commit_transaction()
                    in_txn = []
            except KafkaError:
                if self.resend_unacked and in_txn:
                    backlog = np.concatenate([backlog] + [v - plan.first for v in in_txn])   # send them again
                in_txn = []
                if producer.up and producer.txn.state in ("abortable_error", "in_transaction", "committing"):
                    try:
                        yield from producer.abort_transaction()
                    except KafkaError:
                        pass
