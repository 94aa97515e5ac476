"""The workload of a scenario: an application producing records at a rate, consumers polling them, and the
catch-up reader that ends every run, so that a record nobody read is lost rather than late."""
from __future__ import annotations

import numpy as np

from .configs import Config, ConfigError, Setting, _table, non_negative_int, non_negative_number, one_of, \
    positive_int, positive_number, probability


def _pipeline(key, value):
    if value is None:
        return None
    return one_of("at_least_once", "exactly_once_v2")(key, value)


def _resend(key, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not allowed: {key} must be True or False")
    return value


WORKLOAD = _table(
    Setting("messages", 3000, non_negative_int, "records the application sends"),
    Setting("rate", 1000, positive_number, "records per simulated second (Poisson arrivals)"),
    Setting("keys", 10, non_negative_int, "distinct keys; 0 sends records without keys"),
    Setting("record_size", 100, positive_int, "bytes per record, for batch.size"),
    Setting("consumers", 1, non_negative_int, "consumers reading the topic"),
    Setting("processing_time", 0.0, non_negative_number, "seconds a consumer spends on each record"),
    Setting("commit", "auto", one_of("auto", "after-process", "before-process")),
    Setting("transaction_size", 0, non_negative_int),
    Setting("abort_ratio", 0.0, probability),
    Setting("pipeline", None, _pipeline),
    Setting("resend_unacked", True, _resend,
            "after a producer restart the application sends again what it never saw acknowledged"),
)

NOT_YET = {  # settings DESIGN.md names whose behaviour arrives with a later capability
    "commit": ("auto", "offset commits arrive with consumer groups"),
    "transaction_size": (0, "transactions arrive with the transactions capability"),
    "abort_ratio": (0.0, "transactions arrive with the transactions capability"),
    "pipeline": (None, "consume-transform-produce arrives with the transactions capability"),
}

TICK = 0.001          # the application hands records to the producer in 1 ms steps
POLL_TIMEOUT = 0.5
CATCH_UP_QUIET = 3.0  # the catch-up reader stops after this long at the end of every partition
CATCH_UP_LIMIT = 60.0  # ... or after this long, leaving partitions that stayed offline unread


def workload_config(given) -> Config:
    config = Config("workload", WORKLOAD, given)
    for key, (default, why) in NOT_YET.items():
        if config[key] != default:
            raise ConfigError(f"workload {key}={config[key]!r} is not modelled yet: {why}. "
                              f"Leave {key} at {default!r} for now.")
    return config


class Workload:
    def __init__(self, lab, topic: str, spec: Config, producer_config=None, consumer_config=None):
        self.lab = lab
        self.topic = topic
        self.spec = spec
        self.env = lab.env
        world = lab.world
        n = spec["messages"]
        rng = np.random.default_rng(world.rng("workload").getrandbits(64))
        self.arrivals = np.cumsum(rng.exponential(1.0 / spec["rate"], n)) if n else np.empty(0)
        self.keys = rng.integers(0, spec["keys"], n) if spec["keys"] else np.full(n, -1, np.int64)
        self.values = np.arange(n, dtype=np.int64)
        self.acked = np.zeros(n, bool)
        self.handed = 0                     # values handed to the producer so far
        self.producer = lab.producer(producer_config, name="producer", record_size=spec["record_size"])
        self.producer.on_restarted.append(self._producer_restarted)
        self.producer.outcome_listeners.append(self._outcome)
        tps = lab.kafka.partitions(topic)
        self.consumers = []
        for i in range(spec["consumers"]):
            consumer = lab.consumer(consumer_config, name=f"consumer-{i + 1}")
            self.consumers.append(consumer)
        for i, consumer in enumerate(self.consumers):
            consumer.assign(tps[i::len(self.consumers)])
        self.stopping = False
        self.produced = self.env.event()

    # ---- producing --------------------------------------------------------------------------------------
    def start(self):
        self.env.process(self._produce())
        for consumer in self.consumers:
            self.env.process(self._consume(consumer))

    def _produce(self):
        env, producer, n = self.env, self.producer, len(self.values)
        # Consumers with auto.offset.reset=latest start first, so that "latest" means "before any record".
        while env.now < 1.0 and any(p is None for c in self.consumers for p in c.positions.values()):
            yield env.timeout(TICK)
        self.arrivals += env.now
        while self.handed < n:
            nxt = self.arrivals[self.handed]
            step = max(TICK, np.ceil((nxt - env.now) / TICK) * TICK)
            yield env.timeout(step)
            if not producer.up:
                continue                      # the application died with its producer; it resumes later
            end = int(np.searchsorted(self.arrivals, env.now, side="right"))
            if end > self.handed:
                sl = slice(self.handed, end)
                times = np.maximum(self.arrivals[sl], env.now - step)
                producer.send_many(self.topic, self.values[sl], self.keys[sl], times)
                self.handed = end
        while producer.unresolved > 0 or not producer.up:
            yield env.timeout(0.05)
        self.produced.succeed()

    def _outcome(self, type_, values):
        if type_ == "ok" and len(values):
            self.acked[values] = True

    def _producer_restarted(self, producer):
        if not self.spec["resend_unacked"]:
            return
        unacked = np.flatnonzero(~self.acked[:self.handed])
        if len(unacked):
            producer.send_many(self.topic, self.values[unacked], self.keys[unacked],
                               np.full(len(unacked), self.env.now))

    # ---- consuming --------------------------------------------------------------------------------------
    def _consume(self, consumer):
        env = self.env
        processing = self.spec["processing_time"]
        while not self.stopping:
            if not consumer.up:
                yield env.timeout(0.1)
                continue
            records = yield from consumer.poll(POLL_TIMEOUT)
            if processing and len(records):
                yield env.timeout(processing * len(records))

    def catch_up(self, isolation_level: str):
        """A fresh consumer reads every partition from the start to its end; returns the SimPy process."""
        reader = self.lab.consumer({"auto.offset.reset": "earliest", "isolation.level": isolation_level},
                                   name="catch-up")
        tps = self.lab.kafka.partitions(self.topic)
        reader.assign(tps)
        self.reader = reader
        return self.env.process(self._read_to_end(reader, tps))

    def _read_to_end(self, reader, tps):
        env = self.env
        start = env.now
        quiet_since = None
        while env.now - start < CATCH_UP_LIMIT:
            records = yield from reader.poll(POLL_TIMEOUT)
            at_end = all(reader.fetched_at.get(tp, -1) > start and reader.fetched_at[tp] >= env.now - 1.0
                         and (reader.position(tp) or 0) >= reader.high_watermarks.get(tp, 1 << 62) for tp in tps)
            if len(records) or not at_end:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = env.now
            elif env.now - quiet_since >= CATCH_UP_QUIET:
                break
        self.stopping = True
