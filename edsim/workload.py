"""The workload of a scenario: an application producing records at a rate, consumers polling them, and the
catch-up reader that ends every run, so that a record nobody read is lost rather than late."""
from __future__ import annotations

import math

import numpy as np

from .clients import CommitFailedException, KafkaError, OffsetOutOfRange
from .configs import Config, ConfigError, Setting, _table, non_negative_int, non_negative_number, one_of, \
    positive_int, positive_number, probability


def _pipeline(key, value):
    if value is None:
        return None
    return one_of("at_least_once", "exactly_once_v2")(key, value)


def _name(key, value):
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}={value!r} is not allowed: {key} must be a non-empty string")
    return value


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
    Setting("commit", "auto", one_of("auto", "after-process", "before-process"),
            "auto: the consumer's auto-commit; after-process / before-process: commitSync after / before "
            "applying the records of a poll (auto-commit off)"),
    Setting("group", "edsim-workload", _name, "group.id of the workload's consumers"),
    Setting("transaction_size", 0, non_negative_int,
            "records per transaction of the producer (transactional.id 'edsim-producer' unless set); 0: none"),
    Setting("abort_ratio", 0.0, probability, "share of the producer's transactions it aborts"),
    Setting("pipeline", None, _pipeline,
            "None, or consume-transform-produce from the topic to '<topic>-out': 'at_least_once' (output "
            "acknowledged, then commitSync) or 'exactly_once_v2' (output and offsets in one transaction, KIP-447)"),
    Setting("commit_interval", 0.1, positive_number,
            "seconds a pipeline member consumes before it commits (Kafka Streams' commit.interval.ms: 100 ms "
            "under exactly_once_v2)"),
    Setting("resend_unacked", True, _resend,
            "after a producer restart the application sends again what it never saw acknowledged"),
)

OUTPUT = 1_000_000_000   # a pipeline writes input value v as output value OUTPUT + v (values stay unique)

TICK = 0.001          # the application hands records to the producer in 1 ms steps
POLL_TIMEOUT = 0.5
CATCH_UP_QUIET = 3.0  # the catch-up reader stops after this long at the end of every partition
CATCH_UP_LIMIT = 60.0  # ... or after this long, leaving partitions that stayed offline unread
DRAIN_LIMIT = 120.0    # after the last send, the group gets this long to process every acknowledged record


def workload_config(given) -> Config:
    config = Config("workload", WORKLOAD, given)
    if config["pipeline"] is not None and config["consumers"] < 1:
        raise ConfigError(f"workload pipeline={config['pipeline']!r} is not allowed with consumers=0: the "
                          "pipeline's members are the workload's consumers")
    if config["abort_ratio"] > 0 and not config["transaction_size"]:
        raise ConfigError(f"workload abort_ratio={config['abort_ratio']} is not allowed with transaction_size=0: "
                          "only a transactional producer can abort")
    if config["messages"] * 2 >= OUTPUT and config["pipeline"] is not None:
        raise ConfigError(f"workload messages={config['messages']} is too many for a pipeline (at most "
                          f"{OUTPUT // 2 - 1})")
    return config


def producer_settings(spec, given) -> dict:
    """The workload producer's config: a transactional.id when it writes in transactions."""
    config = dict(given or {})
    if spec["transaction_size"]:
        config.setdefault("transactional.id", "edsim-producer")
    return config


def pipeline_producer_settings(spec, given, i) -> dict:
    """Member ``i``'s producer: the scenario's producer settings, transactional under exactly_once_v2 (one
    transactional.id per member, as Kafka Streams' EOS v2 has one per thread)."""
    config = {k: v for k, v in (given or {}).items() if k != "transactional.id"}
    if spec["pipeline"] == "exactly_once_v2":
        config["transactional.id"] = f"edsim-pipeline-{i + 1}"
    return config


class _PartitionPlan:
    """The workload's records grouped by partition, in arrival order within each: per partition its positions
    in the arrival order, and its values, keys and arrival times, with a cursor of what was handed over."""

    def __init__(self, workload, partitions, parts):
        self.workload = workload
        self.partitions = partitions
        order = np.argsort(parts.astype(np.uint16) if partitions <= 65536 else parts, kind="stable")  # radix sort
        bounds = np.concatenate(([0], np.cumsum(np.bincount(parts, minlength=partitions)))).tolist()
        self.groups = []
        for p in range(partitions):
            idx = order[bounds[p]:bounds[p + 1]]
            if len(idx):
                self.groups.append([p, idx, workload.values[idx], workload.keys[idx], workload.arrivals[idx], 0])

    def current(self) -> bool:
        """False once the producer knows the topic has more partitions (keys move: it partitions them again)."""
        w = self.workload
        return w.producer.partition_count(w.topic) == self.partitions

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
        self.aborted = np.zeros(n, bool)      # sent in a transaction the application aborted on purpose
        self.processed = np.zeros(n, bool)
        self.handed = 0                     # values handed to the producer so far
        self.producer = lab.producer(producer_settings(spec, producer_config), name="producer",
                                     record_size=spec["record_size"])
        self.producer.on_restarted.append(self._producer_restarted)
        self.producer.outcome_listeners.append(self._outcome)
        self.pipeline = spec["pipeline"]
        self.output = f"{topic}-out" if self.pipeline else None
        self.consumers = []
        self.pipeline_producers = []
        config = dict(consumer_config or {})
        if self.pipeline == "exactly_once_v2":
            config["isolation.level"] = "read_committed"   # as Kafka Streams sets it under exactly_once_v2
        config.setdefault("group.id", spec["group"])
        # The topic is new for the run, so the group starts from its beginning: with Kafka's default
        # (latest) a group that forms after the first records (a fault can delay it) would skip them.
        config.setdefault("auto.offset.reset", "earliest")
        if spec["commit"] != "auto" or self.pipeline:
            config.setdefault("enable.auto.commit", False)
        if spec["consumers"]:
            lab.kafka.ensure_offsets_topic()
        for i in range(spec["consumers"]):
            consumer = lab.consumer(config, name=f"consumer-{i + 1}")
            consumer.subscribe([topic])
            consumer.on_restarted.append(lambda c: c.subscribe([self.topic]))
            self.consumers.append(consumer)
            if self.pipeline:
                # one process: the member's consumer and its producer crash, pause and restart together
                out = lab.producer(pipeline_producer_settings(spec, producer_config, i),
                                   name=f"consumer-{i + 1}.producer", record_size=spec["record_size"])
                consumer.companions.append(out)
                self.pipeline_producers.append(out)
        self.stopping = False
        self.produced = self.env.event()

    # ---- producing --------------------------------------------------------------------------------------
    def start(self):
        self.env.process(self._produce_transactions() if self.spec["transaction_size"] else self._produce())
        for i, consumer in enumerate(self.consumers):
            if self.pipeline:
                self.env.process(self._transform(consumer, self.pipeline_producers[i]))
            else:
                self.env.process(self._consume(consumer))

    def _produce(self):
        env, producer, n = self.env, self.producer, len(self.values)
        # The group forms first, so that auto.offset.reset=latest means "before any record".
        while env.now < 5.0 and not self._group_ready():
            yield env.timeout(TICK)
        self.arrivals += env.now
        arrivals = self.arrivals
        plan = self._partition_plan()
        while self.handed < n:
            step = max(TICK, math.ceil((float(arrivals[self.handed]) - env.now) / TICK) * TICK)
            yield env.timeout(step)
            if not producer.up:
                continue                      # the application died with its producer; it resumes later
            end = int(arrivals.searchsorted(env.now, side="right"))
            if end > self.handed:
                floor = env.now - step        # records that waited for a dead producer were invoked at its return
                if plan is not None and plan.current():
                    producer.send_grouped(self.topic, plan.take(end, floor))
                else:
                    sl = slice(self.handed, end)
                    times = np.maximum(self.arrivals[sl], floor)
                    producer.send_many(self.topic, self.values[sl], self.keys[sl], times)
                self.handed = end
        while producer.outstanding > 0 or not producer.up:
            yield env.timeout(0.05)
        self.produced.succeed()

    def _partition_plan(self):
        """Keyed records go to partitions the producer can tell in advance: group them once, so that each step
        hands the producer one slice per partition (None for unkeyed records, which stick by batch size)."""
        if not self.spec["keys"] or not len(self.values):
            return None
        partitions = self.producer.partition_count(self.topic)
        return _PartitionPlan(self, partitions, self.producer.partitions_of(self.topic, self.keys))

    def _arrived(self, step):
        """Values that arrived by now and were not handed over yet: (slice, invoke times)."""
        env = self.env
        end = int(np.searchsorted(self.arrivals, env.now, side="right"))
        sl = slice(self.handed, end)
        return sl, np.maximum(self.arrivals[sl], env.now - step)

    def _produce_transactions(self):
        """The application writes in transactions of ``transaction_size`` records and aborts a share
        ``abort_ratio`` of them; after a crash it initialises again (fencing nothing but its own past) and, with
        ``resend_unacked``, sends again what no committed transaction carried."""
        env, producer, n = self.env, self.producer, len(self.values)
        size, rng = self.spec["transaction_size"], self.lab.world.rng("workload/aborts")
        while env.now < 5.0 and not self._group_ready():
            yield env.timeout(TICK)
        self.arrivals += env.now
        backlog = np.empty(0, np.int64)       # values to send again after a crash
        in_txn = []                           # value arrays of the open transaction
        while True:
            if not producer.up:
                in_txn = []
                yield env.timeout(0.05)
                continue
            try:
                if producer.txn.state in ("uninitialized", "fatal_error"):
                    in_txn = []
                    yield from producer.init_transactions()
                    if self.spec["resend_unacked"]:
                        backlog = np.flatnonzero(~self.acked[:self.handed] & ~self.aborted[:self.handed])
                sent = sum(len(v) for v in in_txn)
                if self.handed >= n and not len(backlog) and not in_txn:
                    break
                if producer.txn.state == "ready":
                    producer.begin_transaction()
                room = size - sent
                if len(backlog):
                    values, backlog = backlog[:room], backlog[room:]
                    times = np.full(len(values), env.now)
                elif self.handed < n:
                    step = max(TICK, np.ceil((self.arrivals[self.handed] - env.now) / TICK) * TICK)
                    yield env.timeout(step)
                    if not producer.up:
                        continue
                    sl, times = self._arrived(step)
                    values = self.values[sl][:room]
                    times = times[:room]
                    self.handed += len(values)
                else:
                    values = self.values[:0]
                if len(values):
                    producer.send_many(self.topic, values, self.keys[values], times)
                    in_txn.append(values)
                    sent += len(values)
                if sent >= size or (self.handed >= n and not len(backlog) and sent):
                    if rng.random() < self.spec["abort_ratio"]:
                        # the records are written first (something goes wrong after), so the aborted
                        # records are in the log, where read_uncommitted consumers can see them
                        yield from producer.flush()
                        yield from producer.abort_transaction()
                        for v in in_txn:
                            self.aborted[v] = True
                    else:
                        yield from producer.commit_transaction()
                    in_txn = []
            except KafkaError:
                if self.spec["resend_unacked"] and in_txn:
                    backlog = np.concatenate([backlog] + in_txn)   # not committed: send them again
                in_txn = []
                if producer.up and producer.txn.state in ("abortable_error", "in_transaction", "committing"):
                    try:
                        yield from producer.abort_transaction()
                    except KafkaError:
                        pass
        self.produced.succeed()

    def drained(self):
        """SimPy process: ends when the group has processed every acknowledged record, or has read every
        partition up to its high watermark (records beyond it, or on an offline partition, cannot be read),
        or DRAIN_LIMIT passes."""
        env = self.env
        deadline = env.now + DRAIN_LIMIT
        while self.consumers and env.now < deadline and (self.acked & ~self.processed).any() \
                and not self._read_all_readable():
            yield env.timeout(0.1)

    def _read_all_readable(self):
        kafka = self.lab.kafka
        for tp in kafka.partitions(self.topic):
            state = kafka.controller.partitions[tp]
            if state.leader < 0 or not kafka.brokers[state.leader].up:
                continue
            hw = kafka.brokers[state.leader].replicas[tp].hw
            owner = next((c for c in self.consumers if c.up and tp in c.positions), None)
            if owner is None or (owner.positions[tp] or 0) < hw:
                return False
        return True

    def _group_ready(self):
        assigned = [tp for c in self.consumers for tp in c.assignment]
        return (all(c.membership.state == "stable" for c in self.consumers)
                and len(assigned) == self.lab.kafka.topics[self.topic]["partitions"]
                and all(p is not None for c in self.consumers for p in c.positions.values()))

    def _outcome(self, type_, values):
        if type_ == "ok" and len(values):
            self.acked[values] = True

    def _producer_restarted(self, producer):
        if not self.spec["resend_unacked"] or self.spec["transaction_size"]:
            return                           # (a transactional application resends inside its transactions)
        unacked = np.flatnonzero(~self.acked[:self.handed])
        if len(unacked):
            producer.send_many(self.topic, self.values[unacked], self.keys[unacked],
                               np.full(len(unacked), self.env.now))

    # ---- consuming --------------------------------------------------------------------------------------
    def _consume(self, consumer):
        """The application: poll, apply each record's side effect, commit as the workload's strategy says."""
        env = self.env
        strategy = self.spec["commit"]
        while not self.stopping:
            if not consumer.up or consumer.paused:
                yield consumer.when_running() if consumer.up else env.timeout(0.1)
                continue
            incarnation = consumer.incarnation
            try:
                records = yield from consumer.poll(POLL_TIMEOUT)
            except OffsetOutOfRange:
                continue
            if not len(records) or consumer.incarnation != incarnation:
                continue
            # commitSync() with no arguments, as applications usually call it: every assigned partition's
            # position, including partitions that returned nothing (so a new owner never falls back on
            # auto.offset.reset for them).
            if strategy == "before-process":
                try:
                    yield from consumer.commit_sync()
                except CommitFailedException:
                    continue                           # the partitions moved on: their new owner will do them
            done = yield from self._process(consumer, records, incarnation)
            if strategy == "after-process" and done and consumer.incarnation == incarnation:
                try:
                    yield from consumer.commit_sync()
                except CommitFailedException:
                    pass                               # processed, not committed: the new owner does them again

    def _process(self, consumer, records, incarnation):
        """Apply each record's side effect, ``processing_time`` apiece; a crash stops it mid-way, a pause
        stalls it. Returns the next offset to commit per partition."""
        env, history = self.env, self.lab.history
        per_record = self.spec["processing_time"]
        done = {}
        for tp, offsets, values, keys, _payloads in records.parts:
            if per_record <= 0:
                history.processed(env.now, consumer.name, tp[0], tp[1], values, keys, offsets)
                self.processed[values[values >= 0]] = True
                done[tp] = int(offsets[-1]) + 1
                continue
            for i in range(len(offsets)):
                yield env.timeout(per_record)
                if consumer.up and consumer.paused:
                    yield consumer.when_running()
                if not consumer.up or consumer.incarnation != incarnation:
                    return done
                history.processed(env.now, consumer.name, tp[0], tp[1], values[i:i + 1], keys[i:i + 1],
                                  offsets[i:i + 1])
                if values[i] >= 0:
                    self.processed[values[i]] = True
                done[tp] = int(offsets[i]) + 1
        return done

    # ---- consume-transform-produce ------------------------------------------------------------------------
    def _transform(self, consumer, producer):
        """A pipeline member: poll the topic for ``commit_interval``, write OUTPUT + v for every input v, then
        commit. exactly_once_v2: the outputs and the input offsets commit in one transaction (KIP-447), and a
        failed commit aborts both and starts again from the committed offsets. at_least_once: wait for the
        outputs' acknowledgements, then commitSync; a crash in between writes the outputs again.

        A record counts as processed (a ``process`` row) once its output is durable: committed in the
        transaction, or acknowledged under at_least_once."""
        env, history = self.env, self.lab.history
        exactly_once = self.pipeline == "exactly_once_v2"
        per_record = self.spec["processing_time"]
        while not self.stopping:
            if not consumer.up or consumer.paused:
                yield consumer.when_running() if consumer.up else env.timeout(0.1)
                continue
            incarnation = consumer.incarnation
            inputs, offsets = [], {}
            try:
                if exactly_once:
                    if producer.txn.state in ("uninitialized", "fatal_error"):
                        yield from producer.init_transactions()
                        consumer.reset_to_committed("a new producer session")
                    producer.begin_transaction()
                    consumer.txn_op = producer.txn.op
                    generation = None
                deadline = env.now + self.spec["commit_interval"]
                while env.now < deadline and not self.stopping:
                    records = yield from consumer.poll(min(POLL_TIMEOUT, max(deadline - env.now, TICK)))
                    if consumer.incarnation != incarnation:
                        break
                    if exactly_once and generation is None and records.parts:
                        # The offsets commit with the generation the transaction's first records were read in:
                        # a rebalance after that fences the commit (KIP-447), as a rebalance listener would
                        # abort the transaction when partitions are revoked. A member with nothing read yet has
                        # nothing to lose to a rebalance (Kafka Streams begins its transaction at the first
                        # send), so its first assignment does not abort it.
                        generation = consumer.group_metadata()
                    for tp, offs, vals, keys, _payloads in records.parts:
                        if per_record > 0:
                            yield env.timeout(per_record * len(vals))
                            if consumer.paused:
                                yield consumer.when_running()
                            if consumer.incarnation != incarnation:
                                break
                        producer.send_many(self.output, vals + OUTPUT, keys, np.full(len(vals), env.now))
                        inputs.append((tp, offs, vals, keys))
                        offsets[tp] = int(offs[-1]) + 1
                if consumer.incarnation != incarnation:
                    continue
                if exactly_once:
                    if offsets:
                        yield from producer.send_offsets_to_transaction(offsets, generation)
                    yield from producer.commit_transaction()
                else:
                    yield from producer.flush()
                    if consumer.incarnation != incarnation:
                        continue
                self._processed(consumer, inputs)
                if not exactly_once and offsets:
                    yield from consumer.commit_sync(offsets)
            except (KafkaError, CommitFailedException):
                if consumer.incarnation != incarnation or not consumer.up:
                    continue
                if exactly_once:
                    try:
                        yield from producer.abort_transaction()
                    except KafkaError:
                        pass                    # fenced: init_transactions() again on the next round
                    consumer.reset_to_committed()
            finally:
                consumer.txn_op = -1

    def _processed(self, consumer, inputs):
        for tp, offs, vals, keys in inputs:
            self.lab.history.processed(self.env.now, consumer.name, tp[0], tp[1], vals, keys, offs)
            self.processed[vals[vals >= 0]] = True

    def catch_up(self, isolation_level: str):
        """A fresh consumer reads every partition from the start to its end; returns the SimPy process."""
        reader = self.lab.consumer({"auto.offset.reset": "earliest", "isolation.level": isolation_level},
                                   name="catch-up")
        tps = self.lab.kafka.partitions(self.topic)
        if self.output:
            tps += self.lab.kafka.partitions(self.output)
        reader.assign(tps)
        self.reader = reader
        return self.env.process(self._read_to_end(reader, tps))

    def _offline_for_good(self, tp):
        """No leader, and every ISR member is down with no restart to come (the catch-up runs after every fault
        that can heal has healed): nothing will ever be read there, so the reader need not wait for it."""
        kafka = self.lab.kafka
        state = kafka.controller.partitions[tp]
        return state.leader < 0 and not any(kafka.brokers[r].up for r in state.isr)

    def _read_to_end(self, reader, tps):
        env = self.env
        start = env.now
        quiet_since = None
        while env.now - start < CATCH_UP_LIMIT:
            records = yield from reader.poll(POLL_TIMEOUT)
            at_end = all(self._offline_for_good(tp) or (
                reader.fetched_at.get(tp, -1) > start and reader.fetched_at[tp] >= env.now - 1.0
                and (reader.position(tp) or 0) >= (reader.end_offset(tp) or 0)) for tp in tps)
            if len(records) or not at_end:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = env.now
            elif env.now - quiet_since >= CATCH_UP_QUIET:
                break
        self.stopping = True
