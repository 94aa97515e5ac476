"""``apps.Consume`` (a consumer group applying each record's side effect) and ``apps.Pipeline``
(consume-transform-produce), the applications of the book's chapters 4 and 12.

Each instance is one group member. A record's side effect is a ``process`` history row, which the checker's
``duplicate-processing`` and ``lost-processing`` read (per consumer group).
"""
from __future__ import annotations

import numpy as np

from ..app.service import Service
from ..clients import CommitFailedException, FatalConsumerError, KafkaError, OffsetOutOfRange
from ..configs import ConfigError

POLL_TIMEOUT = 0.5
COMMITS = ("auto", "after-process", "before-process")
GUARANTEES = ("at_least_once", "exactly_once_v2")


class Marks:
    """Which values were processed: a growable bitmap the run's drain phase reads."""

    def __init__(self):
        self.bits = np.zeros(0, bool)

    def mark(self, values):
        top = values.max() + 1
        bits = self.bits
        if top > bits.size:
            bits = self.bits = np.concatenate([bits, np.zeros(max(top - bits.size, bits.size), bool)])
        bits[values] = True

    def missing(self, values) -> bool:
        """Is any of ``values`` unmarked?"""
        if not len(values):
            return False
        inside = values[values < len(self.bits)]
        return len(inside) < len(values) or not self.bits[inside].all()


def _processed(ctx, marks, consumer, topic, partition, values, keys, offsets):
    """The side effects of these records of one partition are applied (one ``process`` op)."""
    ctx._instance.world.history.processed(ctx.env._now, consumer.name, topic, partition, values, keys, offsets)
    marks.mark(values)


def _marks(ctx) -> Marks:
    marks = ctx.shared.get("processed")
    if marks is None:
        marks = ctx.shared["processed"] = Marks()
    return marks


class Consume(Service):
    """A consumer group on ``topic``: polls, applies each record's side effect (``processing_time`` seconds
    apiece), commits as ``commit`` says (auto-commit, or commitSync after / before processing a poll)."""

    def __init__(self, topic="events", group="edsim-workload", commit="auto", processing_time=0.0, consumer=None):
        if commit not in COMMITS:
            raise ConfigError(f"Consume commit={commit!r} is not allowed: one of {', '.join(COMMITS)}")
        self.options = dict(topic=topic, group=group, commit=commit, processing_time=processing_time,
                            consumer=consumer)
        for name, value in self.options.items():
            setattr(self, name, value)

    def config(self) -> dict:
        config = dict(self.consumer or {})
        # The topic is new for the run, so the group starts from its beginning: with Kafka's default (latest) a
        # group that forms after the first records (a fault can delay it) would skip them.
        config.setdefault("auto.offset.reset", "earliest")
        if self.commit != "auto":
            config.setdefault("enable.auto.commit", False)
        return config

    def run(self, ctx):
        consumer = ctx.consumer(group=self.group, subscribe=[self.topic], config=self.config())
        marks = _marks(ctx)
        while True:
            try:
                records = yield from consumer.poll(POLL_TIMEOUT)
            except OffsetOutOfRange:
                continue
            except FatalConsumerError:
                consumer.close()          # the poll loop ends, as an unhandled exception ends a Java application's
                return
            if not len(records):
                continue
            # commitSync() with no arguments, as applications usually call it: every assigned partition's
            # position, including partitions that returned nothing (so a new owner never falls back on
            # auto.offset.reset for them).
            if self.commit == "before-process":
                try:
                    yield from consumer.commit_sync()
                except CommitFailedException:
                    continue                           # the partitions moved on: their new owner will do them
            done = yield from self._process(ctx, marks, consumer, records)
            if self.commit == "after-process" and done:
                try:
                    yield from consumer.commit_sync()
                except CommitFailedException:
                    pass                               # processed, not committed: the new owner does them again

    def _process(self, ctx, marks, consumer, records):
        """Apply each record's side effect, ``processing_time`` apiece (a crash stops it mid-way, a pause
        stalls it). Returns the next offset to commit per partition."""
        per_record = self.processing_time
        done = {}
        for tp, offsets, values, keys, _payloads in records.parts:
            if per_record <= 0:
                _processed(ctx, marks, consumer, tp[0], tp[1], values, keys, offsets)
                done[tp] = int(offsets[-1]) + 1
                continue
            for i in range(len(offsets)):
                yield from ctx.sleep(per_record)
                _processed(ctx, marks, consumer, tp[0], tp[1], values[i:i + 1], keys[i:i + 1], offsets[i:i + 1])
                done[tp] = int(offsets[i]) + 1
        return done


class Pipeline(Service):
    """Consume-transform-produce from ``topic`` to ``output``: each input value v becomes a fresh value derived
    from v. ``exactly_once_v2``: outputs and input offsets commit in one transaction (KIP-447), and a failed
    commit aborts both and starts again from the committed offsets. ``at_least_once``: wait for the outputs'
    acknowledgements, then commitSync; a crash in between writes the outputs again.

    A record counts as processed (a ``process`` row) once its output is durable: committed in the transaction,
    or acknowledged under at_least_once."""

    def __init__(self, topic="events", output="events-out", guarantee="at_least_once", group="edsim-workload",
                 commit_interval=0.1, processing_time=0.0, consumer=None, producer=None, record_size=100,
                 transactional_id_prefix=None):
        if guarantee not in GUARANTEES:
            raise ConfigError(f"Pipeline guarantee={guarantee!r} is not allowed: one of {', '.join(GUARANTEES)}")
        self.options = dict(topic=topic, output=output, guarantee=guarantee, group=group,
                            commit_interval=commit_interval, processing_time=processing_time, consumer=consumer,
                            producer=producer, record_size=record_size,
                            transactional_id_prefix=transactional_id_prefix)
        for name, value in self.options.items():
            setattr(self, name, value)

    def configs(self, ctx):
        config = dict(self.consumer or {})
        out = {k: v for k, v in (self.producer or {}).items() if k != "transactional.id"}
        if self.guarantee == "exactly_once_v2":
            config["isolation.level"] = "read_committed"     # as Kafka Streams sets it under exactly_once_v2
            # one transactional.id per member, as Kafka Streams' EOS v2 has one per thread
            out["transactional.id"] = f"{self.transactional_id_prefix or ctx.service}-{ctx.instance + 1}"
        config.setdefault("auto.offset.reset", "earliest")
        config.setdefault("enable.auto.commit", False)
        return config, out

    def run(self, ctx):
        consumer_config, producer_config = self.configs(ctx)
        consumer = ctx.consumer(group=self.group, subscribe=[self.topic], config=consumer_config)
        producer = ctx.producer(producer_config, record_size=self.record_size)
        ctx._service.hooks.topic_used(ctx._service, self.output)
        env, values, marks = ctx.env, ctx._instance.world.history.values, _marks(ctx)
        exactly_once = self.guarantee == "exactly_once_v2"
        per_record = self.processing_time
        while True:
            inputs, offsets = [], {}
            try:
                if exactly_once:
                    if producer.txn.state in ("uninitialized", "fatal_error"):
                        yield from producer.init_transactions()
                        consumer.reset_to_committed("a new producer session")
                    producer.begin_transaction()
                    consumer.txn_op = producer.txn.op
                    generation = None
                deadline = env.now + self.commit_interval
                while env.now < deadline:
                    records = yield from consumer.poll(min(POLL_TIMEOUT, max(deadline - env.now, 0.001)))
                    if exactly_once and generation is None and records.parts:
                        # The offsets commit with the generation the transaction's first records were read in:
                        # a rebalance after that fences the commit (KIP-447), as a rebalance listener would
                        # abort the transaction when partitions are revoked. A member with nothing read yet has
                        # nothing to lose to a rebalance (Kafka Streams begins its transaction at the first
                        # send), so its first assignment does not abort it.
                        generation = consumer.group_metadata()
                    for tp, offs, vals, keys, _payloads in records.parts:
                        if per_record > 0:
                            yield from ctx.sleep(per_record * len(vals))
                        outputs = values.derive(vals, ctx.service)
                        producer.send_many(self.output, outputs, keys, np.full(len(vals), env.now))
                        inputs.append((tp, offs, vals, keys))
                        offsets[tp] = int(offs[-1]) + 1
                if exactly_once:
                    if offsets:
                        yield from producer.send_offsets_to_transaction(offsets, generation)
                    yield from producer.commit_transaction()
                else:
                    yield from producer.flush()
                for tp, offs, vals, keys in inputs:
                    _processed(ctx, marks, consumer, tp[0], tp[1], vals, keys, offs)
                if not exactly_once and offsets:
                    yield from consumer.commit_sync(offsets)
            except (KafkaError, CommitFailedException) as error:
                if isinstance(error, FatalConsumerError):
                    consumer.close()      # the poll loop ends (see Consume.run)
                    return
                if exactly_once:
                    try:
                        yield from producer.abort_transaction()
                    except KafkaError:
                        pass                    # fenced: init_transactions() again on the next round
                    consumer.reset_to_committed()
            finally:
                consumer.txn_op = -1
