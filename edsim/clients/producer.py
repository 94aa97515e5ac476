"""The producer: accumulate records into batches, send them to partition leaders, retry, and (idempotently)
number them so the leader can drop a retried duplicate.

Follows the Java client (``RecordAccumulator``, ``Sender``, ``TransactionManager``): a batch is sent when
``batch.size`` is full or ``linger.ms`` has passed; at most ``max.in.flight.requests.per.connection`` requests are
outstanding per broker; a retriable error sends the batch again after a backoff that grows from ``retry.backoff.ms``
to ``retry.backoff.max.ms`` (KIP-580, backoff.py) until ``delivery.timeout.ms``. Without idempotence a retried batch can land after a later one (reordering) or twice (a
lost response); with it, the producer id and per-partition sequence numbers let the leader refuse both (KIP-98).
"""
from __future__ import annotations

from bisect import insort

import numpy as np

from ..configs import PRODUCER, Config, ConfigError
from ..kafka import protocol as P
from ..kafka.log import TOMBSTONE, Batch
from .backoff import ExponentialBackoff
from .client import Client
from .partitioner import partition_for
from .transactions import FENCED, KafkaError, TransactionManager

RETRIABLE = frozenset({
    P.NOT_LEADER_OR_FOLLOWER, P.NOT_ENOUGH_REPLICAS, P.NOT_ENOUGH_REPLICAS_AFTER_APPEND, P.REQUEST_TIMED_OUT,
    P.NETWORK_EXCEPTION, P.OUT_OF_ORDER_SEQUENCE_NUMBER, P.UNKNOWN_LEADER_EPOCH, P.FENCED_LEADER_EPOCH,
})
REFRESH = frozenset({P.NOT_LEADER_OR_FOLLOWER, P.NETWORK_EXCEPTION, P.REQUEST_TIMED_OUT,
                     P.UNKNOWN_LEADER_EPOCH, P.FENCED_LEADER_EPOCH})


class RecordMetadata(tuple):
    """(topic, partition, offset) of an acknowledged record; offset -1 when acks=0."""
    __slots__ = ()

    def __new__(cls, topic, partition, offset):
        return super().__new__(cls, (topic, partition, offset))

    topic = property(lambda self: self[0])
    partition = property(lambda self: self[1])
    offset = property(lambda self: self[2])


def producer_config(given) -> tuple[Config, list[str]]:
    """Check a producer config as the Java client does (ProducerConfig.postProcessAndValidateIdempotenceConfigs).

    Returns the config and notes about settings Kafka changed on its own."""
    config = Config("producer", PRODUCER, given)
    notes = []
    explicit = "enable.idempotence" in config.explicit
    conflicts = []
    if config["acks"] != "all":
        conflicts.append(f"acks={config['acks']} (idempotence needs acks=all)")
    if config["max.in.flight.requests.per.connection"] > 5:
        conflicts.append("max.in.flight.requests.per.connection="
                         f"{config['max.in.flight.requests.per.connection']} (idempotence allows at most 5)")
    if config["retries"] == 0:
        conflicts.append("retries=0 (idempotence needs retries > 0)")
    if config["enable.idempotence"] and conflicts:
        if explicit:
            raise ConfigError("enable.idempotence=true is not allowed with " + "; ".join(conflicts)
                              + ". Kafka's producer refuses this combination (ConfigException).")
        config._values["enable.idempotence"] = False
        notes.append("enable.idempotence was not set and " + "; ".join(conflicts)
                     + ": Kafka turns idempotence off, and so does edsim")
    if config["transactional.id"] and not config["enable.idempotence"]:
        raise ConfigError("transactional.id is not allowed with enable.idempotence=false: transactions need "
                          "an idempotent producer")
    minimum = config["linger.ms"] + config["request.timeout.ms"]
    if config["delivery.timeout.ms"] < minimum:
        if "delivery.timeout.ms" in config.explicit:
            raise ConfigError(f"delivery.timeout.ms={config['delivery.timeout.ms']} is not allowed: it must be at "
                              f"least linger.ms + request.timeout.ms = {minimum}")
        config._values["delivery.timeout.ms"] = minimum
        notes.append(f"delivery.timeout.ms raised to linger.ms + request.timeout.ms = {minimum}, as Kafka does")
    return config, notes


class SendBatch:
    """A batch on the client side: the records, who is waiting for them, and its delivery attempts."""

    __slots__ = ("tp", "values", "keys", "payloads", "invoke_times", "created", "order", "attempts",
                 "sequence", "wire", "retry_at", "maybe_written", "futures", "sealed", "count", "corr")

    def __init__(self, tp, created, order):
        self.tp = tp
        self.values, self.keys, self.invoke_times, self.payloads, self.futures = [], [], [], None, None
        self.created = created
        self.order = order
        self.attempts = 0
        self.sequence = -1
        self.wire = None
        self.retry_at = 0.0
        self.maybe_written = False
        self.sealed = False
        self.count = 0
        self.corr = -1

    def __lt__(self, other):
        return self.order < other.order

    def __len__(self):
        return self.count


class Producer(Client):
    """A Kafka producer on the simulated network. ``send_many`` is the vectorised path the workload uses;
    ``send`` returns a SimPy event for one record, for services written as SimPy processes."""

    def __init__(self, world, kafka, name: str = "producer", config=None, record_size: int = 100):
        config, self.notes = producer_config(config)
        self.config = config
        super().__init__(world, kafka, name, config.seconds("request.timeout.ms"), config.seconds("retry.backoff.ms"),
                         config.seconds("metadata.max.age.ms"))
        self.principal = config["edsim.principal"]       # who the brokers' authorizer sees (acl.py)
        self.acks = config["acks"]
        self.idempotent = config["enable.idempotence"]
        self.retries = config["retries"]
        self.max_in_flight = config["max.in.flight.requests.per.connection"]
        self.delivery_timeout = config.seconds("delivery.timeout.ms")
        self.linger = config.seconds("linger.ms")
        self.record_size = record_size
        self.records_per_batch = max(1, config["batch.size"] // max(1, record_size))
        self._rng = world.rng(f"{name}/producer")
        self._backoff = ExponentialBackoff(self.retry_backoff, config.seconds("retry.backoff.max.ms"), self._rng)
        self.txn = None
        if config["transactional.id"]:
            kafka.ensure_transaction_topic()
            self.txn = TransactionManager(self, config["transactional.id"], config.seconds("transaction.timeout.ms"))
        # (type, values) when sends end: Java's ProducerInterceptor.onAcknowledgement, as an application
        # that tracks what was acknowledged (to send the rest again after a restart) installs it
        self.outcome_listeners = []
        self.errors: dict[str, int] = {}     # error code -> responses with it, retried or not (Kafka's
                                             # record-error and record-retry metrics, by code)
        self._reset_producer()

    def _reset_producer(self):
        self.producer_id = -1
        self.producer_epoch = 0
        self._sequences: dict[tuple, int] = {}
        self.open: dict[tuple, SendBatch] = {}        # the accumulator: one open batch per partition
        self.queued: dict[tuple, list] = {}            # sealed batches waiting to be sent, in order
        self.sending: dict[int, SendBatch] = {}       # corr -> batch in flight
        self.in_flight: dict[int, int] = {}           # broker id -> requests in flight
        self._sticky: dict[str, tuple] = {}           # topic -> (sticky partition, records sent to it)
        self._tables: dict[tuple, np.ndarray] = {}
        self._order = 0
        self._unresolved: set = set()                  # partitions with an expired batch (KIP-360)
        self._acked_seq: dict[tuple, int] = {}        # highest sequence acknowledged per partition
        self._pump_scheduled = False
        self.outstanding = 0                            # records handed to send() and not yet acknowledged or failed
        self.flush_waiters = []                         # callbacks for when outstanding reaches 0
        if self.txn is not None:
            self.txn.reset()                            # the application calls init_transactions()
        elif self.idempotent:
            self._init_producer_id()

    # ---- lifecycle --------------------------------------------------------------------------------------
    def on_crash(self):
        """Every record not yet acknowledged ends: ``info`` if it may be in the log, ``fail`` if never sent."""
        self.world.history.event(self.now, self.name, "crash", detail="producer process crashed")
        batches = list(self.open.values()) + [b for q in self.queued.values() for b in q] + list(self.sending.values())
        for batch in sorted(batches):
            self._finish(batch, "info" if batch.maybe_written or batch.attempts else "fail", error="CRASHED")
        self.open, self.queued, self.sending = {}, {}, {}
        if self.txn is not None:
            self.txn.on_crash()

    def on_restart(self):
        super().on_restart()
        self._reset_producer()

    def _init_producer_id(self):
        """InitProducerId: a new producer id for this session (idempotence holds within one session only)."""
        bid = self.least_loaded_node()
        if bid is None:
            return self.call_later(self.retry_backoff, self._init_producer_id)
        self.request(bid, P.InitProducerIdRequest(0), self._on_producer_id)

    def _on_producer_id(self, response):
        if not isinstance(response, P.InitProducerIdResponse):
            return self.call_later(self.retry_backoff, self._init_producer_id)
        self.new_epoch(response.producer_id, response.producer_epoch)

    def new_epoch(self, producer_id, producer_epoch):
        """A producer id and epoch from InitProducerId (or EndTxn, KIP-890): sequences start again from 0."""
        self.producer_id, self.producer_epoch = producer_id, producer_epoch
        self._sequences, self._acked_seq, self._unresolved = {}, {}, set()
        for queue in self.queued.values():
            for batch in queue:
                batch.sequence, batch.wire = -1, None
        self._pump()

    # ---- transactions (KIP-98): SimPy generators for the application, as the Java API's blocking calls ----
    def _transactional(self, what) -> TransactionManager:
        if self.txn is None:
            raise ConfigError(f"{what} needs a transactional.id in the producer config")
        return self.txn

    def init_transactions(self):
        """SimPy generator: get the producer id and a new epoch; fences older instances with this
        transactional.id and aborts what they left open."""
        return self._transactional("init_transactions()").init_transactions()

    def begin_transaction(self):
        self._transactional("begin_transaction()").begin_transaction()

    def send_offsets_to_transaction(self, offsets: dict, group_metadata):
        """SimPy generator: commit the consumer's ``offsets`` (tp -> next offset) with the transaction."""
        return self._transactional("send_offsets_to_transaction()").send_offsets_to_transaction(
            {tuple(tp): int(o) for tp, o in offsets.items()}, group_metadata)

    def commit_transaction(self):
        """SimPy generator: flush, then commit; raises KafkaError if the transaction must be aborted instead."""
        return self._transactional("commit_transaction()").commit_transaction()

    def abort_transaction(self):
        """SimPy generator: drop what was not sent, wait for what is in flight, then abort."""
        return self._transactional("abort_transaction()").abort_transaction()

    def flush(self):
        """SimPy generator: wait until every record handed to send() has an outcome (or this process dies)."""
        env, incarnation = self.world.env, self.incarnation
        while self.outstanding > 0 and self.up and self.incarnation == incarnation:
            event = env.event()
            self.flush_waiters.append(lambda _, e=event: e.succeed() if not e.triggered else None)
            self._pump()
            yield env.any_of([event, env.timeout(0.1)])

    def drop_unsent(self, error):
        """Fail every batch not yet sent (abort_transaction, or a fenced producer)."""
        batches = list(self.open.values()) + [b for q in self.queued.values() for b in q]
        self.open, self.queued = {}, {}
        for batch in sorted(batches):
            batch.sealed = True                  # its linger timer must not send it after all
            self._finish(batch, "info" if batch.maybe_written else "fail", error=error)

    # ---- the application's side -------------------------------------------------------------------------
    def partition(self, topic: str, key) -> int:
        """The partition this producer sends ``key`` to now: murmur2 over the partition count its metadata
        knows (a topic that just gained partitions keeps the old count until the next metadata refresh)."""
        return partition_for(key, self.partition_count(topic))

    def send_many(self, topic: str, values, keys, invoke_times, payloads=None, futures=None):
        """Append records (numpy arrays; key -1 means no key) to the accumulator."""
        if topic not in self.kafka.topics:
            raise ConfigError(f"unknown topic {topic!r}; known topics: {', '.join(self.kafka.topics)}")
        if not self.up:
            return
        if self.txn is not None:
            self.txn.check_send()
        n = len(values)
        if not n:
            return
        self.outstanding += n
        partitions = self.partition_count(topic)
        lowest, highest = int(keys.min()), int(keys.max())
        all_keyed, none_keyed = lowest >= 0, highest < 0
        if partitions == 1 and (all_keyed or none_keyed):
            return self._append((topic, 0), values, keys, invoke_times, payloads, futures)
        if all_keyed:
            # group the records by partition, keeping their order within each (one stable sort)
            parts = self._partition_table(topic, partitions, highest)[keys]
            order = parts.argsort(kind="stable")
            sorted_parts = parts[order]
            starts = [0, *(np.flatnonzero(sorted_parts[1:] != sorted_parts[:-1]) + 1).tolist()]
            for a, b, p in zip(starts, starts[1:] + [n], sorted_parts[starts].tolist()):
                idx = order[a:b]
                self._append((topic, p), values[idx], keys[idx], invoke_times[idx],
                             None if payloads is None else [payloads[i] for i in idx],
                             None if futures is None else [futures[i] for i in idx])
        elif none_keyed:
            self._append_sticky(topic, partitions, values, keys, invoke_times, payloads, futures)
        else:
            keyed = keys >= 0
            self.outstanding -= n
            for mask in (keyed, ~keyed):
                idx = np.flatnonzero(mask)
                self.send_many(topic, values[idx], keys[idx], invoke_times[idx],
                               None if payloads is None else [payloads[i] for i in idx],
                               None if futures is None else [futures[i] for i in idx])

    def send_grouped(self, topic: str, groups):
        """``send_many`` for records the caller already grouped by partition with :meth:`partitions_of`:
        ``[(partition, values, keys, invoke_times)]`` in ascending partition order, each in arrival order (the
        workload hands a step's records this way instead of sorting them at every step)."""
        if not self.up:
            return
        if self.txn is not None:
            self.txn.check_send()
        self.outstanding += sum(len(g[1]) for g in groups)
        for partition, values, keys, times in groups:
            self._append((topic, partition), values, keys, times, None, None)

    def partitions_of(self, topic: str, keys):
        """The partition each of ``keys`` (a numpy array, all >= 0) goes to now: murmur2 over the topic's
        partition count as this producer's metadata knows it, as Java's default partitioner does."""
        partitions = self.partition_count(topic)
        if not len(keys):
            return np.empty(0, np.int64)
        return self._partition_table(topic, partitions, int(keys.max()))[keys]

    def _partition_table(self, topic, partitions, max_key):
        """partition_for(key) for keys 0..max_key, kept per topic and partition count."""
        table = self._tables.get((topic, partitions))
        if table is None or len(table) <= max_key:
            size = max(max_key + 1, 2 * len(table) if table is not None else 64)
            table = np.fromiter((partition_for(k, partitions) for k in range(size)), np.int64, size)
            self._tables[(topic, partitions)] = table
        return table

    def send(self, topic: str, value: int, key=None, payload=None, partition=None, tombstone=False):
        """Send one record (to ``partition`` if given, as a Java ProducerRecord may name it); returns a SimPy
        event that succeeds with RecordMetadata or fails with KafkaError. ``tombstone=True`` sends a null value
        (``value`` still names the record in the history): on a compacted topic it deletes ``key``."""
        if tombstone:
            if payload is not None:
                raise ConfigError(f"payload={payload!r} is not allowed with tombstone=True: a tombstone's value is "
                                  "null")
            payload = TOMBSTONE
        event = self.world.env.event()
        event.defused = True            # a failure nobody waits for must not stop the simulation
        keys = np.array([-1 if key is None else int(key)], np.int64)
        values, times = np.array([value], np.int64), np.array([self.now])
        payloads = None if payload is None else [payload]
        if partition is None:
            self.send_many(topic, values, keys, times, payloads, [event])
            return event
        partitions = self.partition_count(topic) if topic in self.kafka.topics else 0
        if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < partitions:
            raise ConfigError(f"partition={partition!r} is not allowed: {topic!r} has partitions 0..{partitions - 1}"
                              " as this producer's metadata knows it")
        if self.up:
            if self.txn is not None:
                self.txn.check_send()
            self.outstanding += 1
            self._append((topic, partition), values, keys, times, payloads, [event])
        return event

    def _append_sticky(self, topic, partitions, values, keys, times, payloads, futures):
        """Records without a key stick to one partition until batch.size bytes have gone to it, then another is
        chosen (KIP-794, Kafka 3.3+; KIP-480 switched when a batch closed, which a short linger.ms does before
        the batch is full)."""
        start = 0
        while start < len(values):
            p, sent = self._sticky.get(topic, (None, 0))
            if p is None:
                p = self._rng.randrange(partitions)
            end = min(len(values), start + self.records_per_batch - sent)
            sl = slice(start, end)
            self._append((topic, p), values[sl], keys[sl], times[sl], None if payloads is None else payloads[sl],
                         None if futures is None else futures[sl])
            sent += end - start
            if sent >= self.records_per_batch:     # batch.size bytes went to p: stick elsewhere
                others = [q for q in range(partitions) if q != p] or [p]
                p, sent = others[self._rng.randrange(len(others))], 0
            self._sticky[topic] = (p, sent)
            start = end

    def _append(self, tp, values, keys, times, payloads, futures):
        start = 0
        n = len(values)
        while start < n:
            batch = self.open.get(tp)
            if batch is None:
                self._order += 1
                batch = self.open[tp] = SendBatch(tp, self.now, self._order)
                self.call_later(self.linger, self._linger_expired, batch)
            end = min(n, start + self.records_per_batch - len(batch))
            batch.values.append(values[start:end])
            batch.keys.append(keys[start:end])
            batch.invoke_times.append(times[start:end])
            batch.count += end - start
            if payloads is not None:
                batch.payloads = (batch.payloads or []) + list(payloads[start:end])
            if futures is not None:
                batch.futures = (batch.futures or []) + list(futures[start:end])
            start = end
            if batch.count >= self.records_per_batch:
                self._seal(batch)

    def _linger_expired(self, batch):
        if not batch.sealed:
            self._seal(batch)

    def _seal(self, batch):
        batch.sealed = True
        if self.open.get(batch.tp) is batch:
            del self.open[batch.tp]
        batch.values = np.concatenate(batch.values)
        batch.keys = np.concatenate(batch.keys)
        batch.invoke_times = np.concatenate(batch.invoke_times)
        insort(self.queued.setdefault(batch.tp, []), batch)
        self._pump()

    # ---- the sender -------------------------------------------------------------------------------------
    def _pump(self):
        """Send every batch that may go now (Kafka's Sender loop)."""
        if self.idempotent and (self.producer_id < 0 or self._unresolved):
            if self.producer_id < 0:
                return
            self._resolve_sequences()
        txn = self.txn
        now = self.now
        need_metadata = False
        for tp, queue in self.queued.items():
            if self.topic_errors and queue and tp[0] in self.topic_errors:
                self._refuse(tp, queue)                  # the metadata refused the topic: fail, do not wait
                continue
            if tp in self._unresolved:
                continue                                 # no new sequences until the gap is resolved
            if txn is not None and queue and not txn.can_send(tp):
                continue                                 # AddPartitionsToTxn first
            while queue:
                batch = queue[0]
                if now - batch.created >= self.delivery_timeout:
                    queue.pop(0)
                    self._expire(batch)
                    continue
                if batch.retry_at > now:
                    break
                leader = self.leader_of(tp)
                if leader < 0:
                    need_metadata = True
                    break
                if self.in_flight.get(leader, 0) >= self.max_in_flight or not self.ready(leader):
                    break
                queue.pop(0)
                self._send(batch, leader)
        if need_metadata:
            self.refresh_metadata()
            self._schedule_pump(self.retry_backoff)

    def _schedule_pump(self, delay):
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.call_later(delay, self._scheduled_pump)

    def _scheduled_pump(self):
        self._pump_scheduled = False
        self._pump()

    def on_metadata(self, changed):
        self._pump()

    def _refuse(self, tp, queue):
        """The topic's metadata came back TOPIC_AUTHORIZATION_FAILED: Java's send() fails the records at once with
        TopicAuthorizationException (KafkaProducer.waitOnMetadata), not retriable. The next send asks for the
        topic's metadata again, so an ACL granted meanwhile is seen."""
        error = self.topic_errors[tp[0]]
        while queue:
            batch = queue.pop(0)
            self.errors[error] = self.errors.get(error, 0) + 1
            self._finish(batch, "info" if batch.maybe_written else "fail", error=error)
        self.refresh_metadata()

    def on_connected(self, bid):
        self._pump()

    def on_tick(self):
        if any(self.queued.values()):
            self._pump()

    def _send(self, batch, leader):
        if self.idempotent and batch.sequence < 0:
            batch.sequence = self._sequences.get(batch.tp, 0)
            self._sequences[batch.tp] = batch.sequence + len(batch)
            batch.wire = None
        if batch.wire is None:
            batch.wire = Batch(-1, -1, batch.values, batch.keys, batch.payloads,
                               self.producer_id if self.idempotent else -1,
                               self.producer_epoch if self.idempotent else -1, batch.sequence, batch.created,
                               transactional=self.txn is not None, record_size=self.record_size)
        batch.attempts += 1
        request = P.ProduceRequest(0, batch.tp, batch.wire, self.acks, self.request_timeout)
        if self.acks == "0":
            request.reply_to = self.name
            self.world.network.send(self, f"broker-{leader}", request)
            batch.maybe_written = True
            self._finish(batch, "ok", offsets=-1)     # no answer will come: the send counts as done
            return
        batch.corr = self.request(leader, request, lambda r, b=batch, l=leader: self._on_response(b, l, r))
        self.sending[batch.corr] = batch
        self.in_flight[leader] = self.in_flight.get(leader, 0) + 1

    def _on_response(self, batch, leader, response):
        self.in_flight[leader] -= 1
        self.sending.pop(batch.corr, None)
        error = response if isinstance(response, str) else response.error
        if error is None:
            if self.idempotent:
                end = batch.sequence + len(batch) - 1
                self._acked_seq[batch.tp] = max(self._acked_seq.get(batch.tp, -1), end)
            offsets = response.base_offset + np.arange(len(batch), dtype=np.int64)
            self._finish(batch, "ok", offsets=offsets)
        else:
            self.errors[error] = self.errors.get(error, 0) + 1
            if error in P.OUTCOME_UNKNOWN:
                batch.maybe_written = True
            if (error == P.OUT_OF_ORDER_SEQUENCE_NUMBER and self.idempotent and self.txn is None
                    and batch.sequence == self._acked_seq.get(batch.tp, -1) + 1):
                # Java's TransactionManager (KIP-360): the refused batch is the next after the last acknowledged
                # one, so the partition lost acknowledged records (an unclean election, a truncation); sequences
                # can only start again in a new epoch, bumped once nothing is in flight.
                self._unresolved.add(batch.tp)
            if error in REFRESH:
                self.refresh_metadata()
            expired = self.now - batch.created >= self.delivery_timeout
            if self.txn is not None and error in FENCED:
                self._finish(batch, "info" if batch.maybe_written else "fail", error=error)
            elif error in RETRIABLE and batch.attempts <= self.retries and not expired:
                backoff = self._backoff(batch.attempts - 1)   # KIP-580
                batch.retry_at = self.now + backoff
                insort(self.queued.setdefault(batch.tp, []), batch)
                self.call_later(backoff, self._pump)
            elif expired:
                self._expire(batch)
            else:
                if error in P.AUTHORIZATION_FAILED:
                    self._release_sequences(batch)
                self._finish(batch, "info" if batch.maybe_written else "fail", error=error)
        self._pump()

    def _release_sequences(self, batch):
        """A batch refused for good, not written (TOPIC_AUTHORIZATION_FAILED): the batches numbered after it move
        down by its size, so the partition's sequence has no gap (Java's TxnPartitionMap
        .adjustSequencesDueToFailedBatch)."""
        if not self.idempotent or batch.sequence < 0:
            return
        tp, first, n = batch.tp, batch.sequence, len(batch)
        if self._sequences.get(tp, 0) >= first + n:
            self._sequences[tp] -= n
        for other in self.queued.get(tp, []) + [b for b in self.sending.values() if b.tp == tp]:
            if other.sequence > first:
                other.sequence -= n
                other.wire = None

    def _expire(self, batch):
        """delivery.timeout.ms passed. An idempotent producer must find out whether its sequence has a gap."""
        self._finish(batch, "info" if batch.maybe_written else "fail", error=P.DELIVERY_TIMEOUT)
        if self.txn is not None:
            self.txn.bump_epoch = batch.sequence >= 0  # the abort that must follow starts a new epoch
        elif self.idempotent and batch.sequence >= 0:
            self._unresolved.add(batch.tp)

    def _resolve_sequences(self):
        """Java's TransactionManager.maybeResolveSequences: once nothing is in flight for a partition with an
        expired batch, either later batches were acknowledged (so the expired one was written: nothing to do) or
        the sequence has a gap, and only a new epoch with sequences from 0 lets the producer go on (KIP-360)."""
        busy = {b.tp for b in self.sending.values()}
        for tp in sorted(self._unresolved):            # sorted: no hash order
            if tp in busy:
                continue
            if self._acked_seq.get(tp, -1) + 1 == self._sequences.get(tp, 0):
                self._unresolved.discard(tp)
            elif not self.sending:                      # the epoch is bumped with nothing in flight
                self._unresolved.clear()
                self._bump_epoch()
                return

    def _bump_epoch(self):
        # Java bumps the epoch through InitProducerId; edsim bumps it in place: same effect on the broker.
        self._unresolved: set = set()                  # partitions with an expired batch (KIP-360)
        self._acked_seq: dict[tuple, int] = {}        # highest sequence acknowledged per partition
        self.producer_epoch += 1
        self._sequences = {}
        for queue in self.queued.values():
            for batch in queue:
                batch.sequence = -1

    # ---- outcomes ---------------------------------------------------------------------------------------
    def _finish(self, batch, type_, offsets=-1, error=""):
        tp = batch.tp
        values = batch.values if isinstance(batch.values, np.ndarray) else np.concatenate(batch.values or [[]])
        keys = batch.keys if isinstance(batch.keys, np.ndarray) else np.concatenate(batch.keys or [[]])
        times = batch.invoke_times if isinstance(batch.invoke_times, np.ndarray) else \
            np.concatenate(batch.invoke_times or [[]])
        self.outstanding -= len(values)
        if self.txn is None or not self.txn.defer(tp, values, keys, times, type_, offsets, error):
            self.world.history.sends(self.now, self.name, type_, tp[0], tp[1], values, keys, times, offsets, error)
            for listener in self.outcome_listeners:
                listener(type_, values)
        if self.outstanding == 0 and self.flush_waiters:
            waiters, self.flush_waiters = self.flush_waiters, []
            for done in waiters:
                done(None)
        if batch.futures:
            for i, future in enumerate(batch.futures):
                if future.triggered:
                    continue
                if type_ == "ok":
                    offset = -1 if isinstance(offsets, int) else int(offsets[i])
                    future.succeed(RecordMetadata(tp[0], tp[1], offset))
                else:
                    future.fail(KafkaError(error or "UNKNOWN", f"record {int(values[i])} to {tp[0]}-{tp[1]}"))
