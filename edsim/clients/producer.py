"""The producer: accumulate records into batches, drain them into one produce request per broker, retry, and
(idempotently) number them so the leader can drop a retried duplicate.

Follows the Java client. The accumulator (``RecordAccumulator``) keeps a deque of batches per partition; a batch
takes records until it holds ``batch.size`` bytes (then a new one starts behind it) or until the sender drains it.
Nothing is sealed at ``linger.ms``: the sender (``Sender.sendProducerData``) finds the brokers with something to
send (``RecordAccumulator.ready``: a partition it leads has a full batch, or more than one, or a first batch that
waited ``linger.ms``, or a flush or transaction commit is under way), and for each broker with a connection and
fewer than ``max.in.flight.requests.per.connection`` requests unanswered it takes the first batch of every
partition the broker leads (``RecordAccumulator.drain``, up to ``max.request.size``) into ONE ProduceRequest. So
under backpressure batches grow instead of queueing: the records that arrive while the requests are in flight
wait in batches that fill up to ``batch.size``, and go together in the next request.

A retriable error sends the batch again after a backoff that grows from ``retry.backoff.ms`` to
``retry.backoff.max.ms`` (KIP-580, backoff.py) until ``delivery.timeout.ms``, which covers batches in flight too
(KIP-91: ``Sender.getExpiredInflightBatches``). Without idempotence a retried batch can land after a later one
(reordering) or twice (a lost response); with it, the producer id and per-partition sequence numbers, assigned
when a batch is drained, let the leader refuse both (KIP-98). ``max.in.flight.requests.per.connection=1`` keeps
order by muting a partition while its batch is in flight (``RecordAccumulator.mutePartition``).
"""
from __future__ import annotations

from collections import deque

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


INF = float("inf")
EPS = 1e-9     # a timer set for t fires at a float within an ulp of t: deadlines compare with this slack
TABLE_KEYS = 1 << 16   # keys below this are hashed once into a table; larger ones one distinct key at a time


class SendBatch:
    """A batch on the client side (Java's ``ProducerBatch``): the records, who is waiting for them, and its
    delivery attempts. Records arrive as numpy chunks, joined once when the sender drains the batch."""

    __slots__ = ("tp", "values", "keys", "payloads", "invoke_times", "created", "order", "attempts",
                 "sequence", "wire", "retry_at", "ready_at", "maybe_written", "futures", "closed", "done", "count")

    def __init__(self, tp, created, order, ready_at):
        self.tp = tp
        self.values, self.keys, self.invoke_times, self.payloads, self.futures = [], [], [], None, None
        self.created = created
        self.order = order
        self.attempts = 0
        self.sequence = -1
        self.wire = None
        self.retry_at = 0.0           # a retried batch backs off until then (RecordAccumulator.shouldBackoff)
        self.ready_at = ready_at      # then it has waited linger.ms (after a retry: its backoff, at least linger)
        self.maybe_written = False
        self.closed = False           # drained once: takes no more records (ProducerBatch.close)
        self.done = False             # has its outcome (completed, failed or expired)
        self.count = 0

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
        super().__init__(world, kafka, name, config)
        self.principal = config["edsim.principal"]       # who the brokers' authorizer sees (acl.py)
        self.acks = config["acks"]
        self.idempotent = config["enable.idempotence"]
        self.retries = config["retries"]
        self.max_in_flight = config["max.in.flight.requests.per.connection"]
        self.delivery_timeout = config.seconds("delivery.timeout.ms")
        self.linger = config.seconds("linger.ms")
        self.record_size = record_size
        self.records_per_batch = max(1, config["batch.size"] // max(1, record_size))
        self.max_request_size = config["max.request.size"]
        self.ordered = self.max_in_flight == 1         # Java's guaranteeMessageOrder: mute partitions in flight
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
        self._wakeups: list = []                       # when the sender is due to run (scheduled timers)
        self._reset_producer()

    def _reset_producer(self):
        """A new producer session (a restart, or init_transactions() again): no id, no batches, no sequences.
        The sender's timers are the process's, not the session's: they are kept (a restart forgets them)."""
        self.producer_id = -1
        self.producer_epoch = 0
        self._sequences: dict[tuple, int] = {}
        self.batches: dict[tuple, deque] = {}         # the accumulator: tp -> batches, oldest first
        self.requests: dict[int, tuple] = {}          # corr -> (broker id, [batches]): produce requests in flight
        self.in_flight: dict[int, int] = {}           # broker id -> requests in flight
        self.inflight_batches: dict[tuple, list] = {}  # tp -> its batches in flight (Sender.inFlightBatches)
        self._muted: set = set()                       # max.in.flight=1: partitions with a batch in flight
        self._drain_index: dict[int, int] = {}        # broker id -> where the last drain stopped
        self._sticky: dict[str, tuple] = {}           # topic -> (sticky partition, records sent to it)
        self._tables: dict[tuple, np.ndarray] = {}
        self._order = 0
        self._unresolved: set = set()                  # partitions with an expired batch (KIP-360)
        self._gaps: set = set()                        # ... or whose next batch was refused OUT_OF_ORDER
        self._acked_seq: dict[tuple, int] = {}        # highest sequence acknowledged per partition
        self._next_expiry = INF                        # no batch reaches delivery.timeout.ms before this
        self._flushing = 0                             # flush() calls waiting (RecordAccumulator.flushInProgress)
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
        batches = [b for q in self.batches.values() for b in q]
        batches += [b for _, sent in self.requests.values() for b in sent if not b.done]
        self.batches, self.requests, self.inflight_batches = {}, {}, {}
        for batch in sorted(batches):
            self._finish(batch, "info" if batch.maybe_written or batch.attempts else "fail", error="CRASHED")
        if self.txn is not None:
            self.txn.on_crash()

    def on_restart(self):
        super().on_restart()
        self._wakeups = []                             # the crashed process's timers never fire
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
        self._sequences, self._acked_seq, self._unresolved, self._gaps = {}, {}, set(), set()
        for queue in self.batches.values():
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
        self._flushing += 1          # every partition's batch is ready at once (RecordAccumulator.beginFlush)
        try:
            while self.outstanding > 0 and self.up and self.incarnation == incarnation:
                event = env.event()
                self.flush_waiters.append(lambda _, e=event: e.succeed() if not e.triggered else None)
                self._pump()
                yield env.any_of([event, env.timeout(0.1)])
        finally:
            if self.incarnation == incarnation:
                self._flushing -= 1

    def drop_unsent(self, error):
        """Fail every batch not yet sent (abort_transaction, or a fenced producer)."""
        batches = [b for q in self.batches.values() for b in q]
        for queue in self.batches.values():
            queue.clear()
        for batch in sorted(batches):
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
            parts = self._partitions(topic, partitions, keys, highest)
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
        for partition, values, keys, times in groups:
            self.outstanding += len(values)
            self._append((topic, partition), values, keys, times, None, None)

    def partitions_of(self, topic: str, keys):
        """The partition each of ``keys`` (a numpy array, all >= 0) goes to now: murmur2 over the topic's
        partition count as this producer's metadata knows it, as Java's default partitioner does."""
        if not len(keys):
            return np.empty(0, np.int64)
        return self._partitions(topic, self.partition_count(topic), keys, int(keys.max()))

    def _partitions(self, topic, partitions, keys, highest):
        """partition_for(key) of every key, hashing each distinct key once: small keys through a table kept per
        topic and partition count, large ones one by one, so the cost follows how many keys there are, not how
        large they are (keys=10**18 costs what keys=10 does)."""
        if highest < TABLE_KEYS:
            table = self._tables.get((topic, partitions))
            if table is None or len(table) <= highest:
                size = max(highest + 1, 2 * len(table) if table is not None else 64)
                table = np.fromiter((partition_for(k, partitions) for k in range(size)), np.int64, size)
                self._tables[(topic, partitions)] = table
            return table[keys]
        distinct, where = np.unique(keys, return_inverse=True)
        return np.fromiter((partition_for(k, partitions) for k in distinct.tolist()), np.int64, len(distinct))[where]

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
        """Add records to the partition's last batch while it is open and not full, then to new ones behind it
        (``RecordAccumulator.append``). Wakes the sender as Java's does when a batch fills or a new one starts:
        at once if that made the partition ready, else when its first batch will have lingered enough."""
        queue = self.batches.get(tp)
        if queue is None:
            queue = self.batches[tp] = deque()
        was_empty = not queue
        capacity = self.records_per_batch
        now = self._env._now                    # (Node.now without its property call: once per appended slice)
        n = len(values)
        start = 0
        filled = False
        while start < n:
            batch = queue[-1] if queue else None
            if batch is None or batch.closed or batch.count >= capacity:
                self._order += 1
                batch = SendBatch(tp, now, self._order, now + self.linger)
                filled = filled or bool(queue)            # a second batch: the first is as good as full
                queue.append(batch)
                if now + self.delivery_timeout < self._next_expiry:
                    self._next_expiry = now + self.delivery_timeout
            end = min(n, start + capacity - batch.count)
            if start == 0 and end == n:
                batch.values.append(values)
                batch.keys.append(keys)
                batch.invoke_times.append(times)
            else:
                batch.values.append(values[start:end])
                batch.keys.append(keys[start:end])
                batch.invoke_times.append(times[start:end])
            batch.count += end - start
            if payloads is not None:
                batch.payloads = (batch.payloads or []) + list(payloads[start:end])
            if futures is not None:
                batch.futures = (batch.futures or []) + list(futures[start:end])
            start = end
            if batch.count >= capacity:
                filled = True
        if filled:
            self._wake(now)
        elif was_empty:
            self._wake(queue[0].ready_at)

    # ---- the sender -------------------------------------------------------------------------------------
    def _wake(self, when):
        """Run the sender at ``when`` (or earlier): one timer, unless one already set fires by then."""
        for due in self._wakeups:
            if due <= when:
                return
        self._wakeups.append(when)
        self.call_later(max(0.0, when - self.now), self._woken, when)

    def _woken(self, when):
        self._wakeups.remove(when)
        self._pump()

    def _pump(self):
        """One pass of Kafka's ``Sender.sendProducerData``: expire batches past ``delivery.timeout.ms`` (queued or
        in flight), find the brokers with a partition ready (``RecordAccumulator.ready``), drain one batch of
        every partition each of them leads into one ProduceRequest per broker (``RecordAccumulator.drain``),
        and set the one timer for when the next batch not yet ready will be."""
        now = self.now
        if now + EPS >= self._next_expiry:
            self._expire_batches(now)
        if self.txn is not None and self.txn.state == "aborting" and self.batches:
            # Sender.maybeAbortBatches: while the transaction aborts, batches back from a failed request are not
            # sent again but fail (RecordAccumulator.abortUndrainedBatches), so the abort's flush can end
            self.drop_unsent(P.TRANSACTION_ABORTED)
        if self.idempotent and (self.producer_id < 0 or self._unresolved):
            if self.producer_id < 0:
                return                                   # InitProducerId first (its answer calls _pump)
            self._resolve_sequences()
        txn = self.txn
        flushing = self._flushing > 0 or (txn is not None and txn.state == "committing")
        capacity = self.records_per_batch
        leaders = self.leaders
        muted = self._muted
        topic_errors = self.topic_errors
        ready_nodes = {}
        next_check = INF
        need_metadata = False
        refused = []
        for tp, queue in self.batches.items():
            if not queue:
                continue
            if topic_errors and tp[0] in topic_errors:
                refused.append(tp)                       # the metadata refused the topic: fail, do not wait
                continue
            known = leaders.get(tp)
            if known is None or known[0] < 0:
                need_metadata = True
                continue
            leader = known[0]
            if leader in ready_nodes or tp in muted:
                continue
            first = queue[0]
            if first.retry_at > now + EPS:                # backing off (RecordAccumulator.shouldBackoff)
                if first.retry_at < next_check:
                    next_check = first.retry_at
            elif len(queue) > 1 or first.count >= capacity or flushing or first.ready_at <= now + EPS:
                ready_nodes[leader] = True
            elif first.ready_at < next_check:
                next_check = first.ready_at
        for tp in refused:
            self._refuse(tp, self.batches[tp])
        if need_metadata:
            self.refresh_metadata()
            next_check = min(next_check, now + self.retry_backoff)
        again = False
        for leader in ready_nodes:
            if self.in_flight.get(leader, 0) >= self.max_in_flight or not self.ready(leader):
                continue                                 # a response, or the connection, calls _pump again
            drained = self._drain(leader, now)
            if drained:
                self._send(leader, drained)
                # Sender.sendProducerData polls with timeout 0 when it sent: it loops at once and drains again
                # while the connection has room (max.in.flight.requests.per.connection) and batches are left
                if not again and self.in_flight.get(leader, 0) < self.max_in_flight and (
                        self._drain_stopped or any(self.batches[batch.tp] for batch in drained)):
                    again = True
        if again:
            self._wake(now)
        if next_check < INF:
            self._wake(next_check)
        if self._next_expiry < INF:
            self._wake(self._next_expiry)

    def _drain(self, leader, now):
        """The first batch of every partition ``leader`` leads (``RecordAccumulator.drainBatchesForOneNode``),
        starting where the last drain for it stopped (Java's per-node ``drainIndex``, so no partition starves),
        up to ``max.request.size``. Skipped: muted partitions, batches backing off, partitions not yet in the
        transaction (AddPartitionsToTxn first), new batches of a partition with an unresolved sequence (KIP-360),
        and a retried batch that is not the first of its partition in flight (``shouldStopDrainBatchesForPartition``;
        Java stops draining the node there, edsim skips the partition). Idempotent batches get their producer id
        and sequence numbers here, once: a retry keeps them."""
        self._drain_stopped = False
        leaders = self.leaders
        parts = [tp for tp in self.batches if leaders.get(tp, (-1,))[0] == leader]
        n = len(parts)
        if not n:
            return []
        start = i = self._drain_index.get(leader, 0) % n
        drained = []
        size = 0
        limit = self.max_request_size
        record_size = self.record_size
        muted = self._muted
        txn = self.txn
        idempotent = self.idempotent
        while True:
            tp = parts[i]
            self._drain_index[leader] = i
            i = (i + 1) % n
            queue = self.batches[tp]
            if queue and tp not in muted:
                first = queue[0]
                if first.retry_at <= now + EPS:
                    nbytes = first.count * record_size
                    if drained and size + nbytes > limit:
                        self._drain_stopped = True       # max.request.size: the rest waits for the next request
                        break
                    if not ((txn is not None and not txn.can_send(tp)) or (idempotent and self._out_of_turn(tp, first))):
                        queue.popleft()
                        if idempotent and first.sequence < 0:
                            first.sequence = self._sequences.get(tp, 0)
                            self._sequences[tp] = first.sequence + first.count
                            first.wire = None
                        first.closed = True
                        size += nbytes
                        drained.append(first)
            if i == start:
                break
        return drained

    def _out_of_turn(self, tp, first):
        """May not go yet (Java's ``shouldStopDrainBatchesForPartition``): a new batch while the partition's
        sequence is unresolved, or a retried one while an earlier sequence of the partition is in flight."""
        if first.sequence < 0:
            return tp in self._unresolved
        flying = self.inflight_batches.get(tp)
        return bool(flying) and min(b.sequence for b in flying) != first.sequence

    def on_metadata(self, changed):
        self._pump()

    def _refuse(self, tp, queue):
        """The topic's metadata came back TOPIC_AUTHORIZATION_FAILED: Java's send() fails the records at once with
        TopicAuthorizationException (KafkaProducer.waitOnMetadata), not retriable. The next send asks for the
        topic's metadata again, so an ACL granted meanwhile is seen."""
        error = self.topic_errors[tp[0]]
        while queue:
            batch = queue.popleft()
            self.errors[error] = self.errors.get(error, 0) + 1
            self._finish(batch, "info" if batch.maybe_written else "fail", error=error)
        self.refresh_metadata()

    def on_connected(self, bid):
        self._pump()

    def on_tick(self):
        if self.outstanding:
            self._pump()          # e.g. a reconnect backoff has passed (Java's NetworkClient.pollDelayMs)

    def _send(self, leader, drained):
        """One ProduceRequest to ``leader`` with a batch per partition (``Sender.sendProduceRequest``)."""
        partitions = {}
        idempotent = self.idempotent
        for batch in drained:
            if batch.wire is None:
                if type(batch.values) is list:
                    batch.values = np.concatenate(batch.values) if len(batch.values) > 1 else batch.values[0]
                    batch.keys = np.concatenate(batch.keys) if len(batch.keys) > 1 else batch.keys[0]
                    batch.invoke_times = (np.concatenate(batch.invoke_times) if len(batch.invoke_times) > 1
                                          else batch.invoke_times[0])
                batch.wire = Batch(-1, -1, batch.values, batch.keys, batch.payloads,
                                   self.producer_id if idempotent else -1,
                                   self.producer_epoch if idempotent else -1, batch.sequence, batch.created,
                                   transactional=self.txn is not None, record_size=self.record_size)
            batch.attempts += 1
            partitions[batch.tp] = batch.wire
        request = P.ProduceRequest(0, partitions, self.acks, self.request_timeout)
        if self.acks == "0":
            request.reply_to = self.name
            self.world.network.send(self, f"broker-{leader}", request)
            for batch in drained:
                batch.maybe_written = True
                self._finish(batch, "ok", offsets=-1)     # no answer will come: the send counts as done
            return
        inflight = self.inflight_batches
        for batch in drained:
            flying = inflight.get(batch.tp)
            if flying is None:
                inflight[batch.tp] = [batch]
            else:
                flying.append(batch)
        if self.ordered:
            self._muted.update(partitions)
        corr = self.request(leader, request, lambda r, q=request: self._on_response(q, r))
        self.requests[corr] = (leader, drained)
        self.in_flight[leader] = self.in_flight.get(leader, 0) + 1

    def _on_response(self, request, response):
        """The answer to a ProduceRequest: each batch completes, retries, expires or fails on its own partition's
        result (``Sender.handleProduceResponse`` / ``completeBatch``); an error code instead of a response (timeout,
        disconnection) is every batch's result."""
        leader, drained = self.requests.pop(request.corr)
        self.in_flight[leader] -= 1
        results = None if isinstance(response, str) else response.results
        error, base = response, -1
        inflight = self.inflight_batches
        for batch in drained:
            tp = batch.tp
            if self.ordered:
                self._muted.discard(tp)
            flying = inflight.get(tp)
            if flying and batch in flying:
                flying.remove(batch)
            if results is not None:
                error, base = results.get(tp, (P.NETWORK_EXCEPTION, -1))
            self._complete(batch, error, base)
        self._pump()

    def _complete(self, batch, error, base):
        tp = batch.tp
        if batch.done:
            # expired at delivery.timeout.ms while in flight: its outcome is reported; the answer only tells the
            # sequence bookkeeping that it was written (Java's ProducerBatch.complete after expiry does nothing)
            if error is None and self.idempotent and batch.sequence >= 0:
                self._acked_seq[tp] = max(self._acked_seq.get(tp, -1), batch.sequence + batch.count - 1)
            return
        if error is None:
            if self.idempotent:
                end = batch.sequence + batch.count - 1
                self._acked_seq[tp] = max(self._acked_seq.get(tp, -1), end)
            offsets = base + np.arange(batch.count, dtype=np.int64)
            self._finish(batch, "ok", offsets=offsets)
            return
        self.errors[error] = self.errors.get(error, 0) + 1
        if error in P.OUTCOME_UNKNOWN:
            batch.maybe_written = True
        if (error == P.OUT_OF_ORDER_SEQUENCE_NUMBER and self.idempotent and self.txn is None
                and batch.sequence == self._acked_seq.get(tp, -1) + 1):
            # Java's TransactionManager (KIP-360): the refused batch is the next after the last acknowledged
            # one, so the partition lost acknowledged records (an unclean election, a truncation); sequences
            # can only start again in a new epoch, bumped once nothing is in flight.
            self._unresolved.add(tp)
            self._gaps.add(tp)
        if error in REFRESH:
            self.refresh_metadata()
        now = self.now
        expired = now - batch.created >= self.delivery_timeout - EPS
        if self.txn is not None and error in FENCED:
            self._finish(batch, "info" if batch.maybe_written else "fail", error=error)
        elif error in RETRIABLE and batch.attempts <= self.retries and not expired:
            backoff = self._backoff(batch.attempts - 1)   # KIP-580
            batch.retry_at = now + backoff
            batch.ready_at = now + max(backoff, self.linger)
            self._reenqueue(batch)
        elif expired:
            self._expire(batch)
        else:
            if error in P.AUTHORIZATION_FAILED:
                self._release_sequences(batch)
            self._finish(batch, "info" if batch.maybe_written else "fail", error=error)

    def _reenqueue(self, batch):
        """Back to the front of its partition's deque (``RecordAccumulator.reenqueue``): in sequence order for an
        idempotent producer (``insertInSequenceOrder``), else first."""
        queue = self.batches.get(batch.tp)
        if queue is None:
            queue = self.batches[batch.tp] = deque()
        if not self.idempotent:
            queue.appendleft(batch)
            return
        for i, other in enumerate(queue):
            if other.order > batch.order:
                queue.insert(i, batch)
                return
        queue.append(batch)

    def _expire_batches(self, now):
        """Batches ``delivery.timeout.ms`` after their creation fail with DELIVERY_TIMEOUT, queued
        (``RecordAccumulator.expiredBatches``) or in flight (KIP-91, ``Sender.getExpiredInflightBatches``: ``info``,
        the request may have written it; its late answer is then ignored). Sets when the next one is due."""
        timeout = self.delivery_timeout
        cutoff = now - timeout + EPS
        expired = []
        following = INF
        for queue in self.batches.values():
            while queue and queue[0].created <= cutoff:
                expired.append(queue.popleft())
            if queue and queue[0].created + timeout < following:
                following = queue[0].created + timeout
        for flying in self.inflight_batches.values():
            if not flying:
                continue
            keep = []
            for batch in flying:
                if batch.created <= cutoff:
                    batch.maybe_written = True
                    expired.append(batch)
                else:
                    keep.append(batch)
                    if batch.created + timeout < following:
                        following = batch.created + timeout
            flying[:] = keep
        self._next_expiry = following
        for batch in sorted(expired):
            self._expire(batch)

    def _release_sequences(self, batch):
        """A batch refused for good, not written (TOPIC_AUTHORIZATION_FAILED): the batches numbered after it move
        down by its size, so the partition's sequence has no gap (Java's TxnPartitionMap
        .adjustSequencesDueToFailedBatch)."""
        if not self.idempotent or batch.sequence < 0:
            return
        tp, first, n = batch.tp, batch.sequence, len(batch)
        if self._sequences.get(tp, 0) >= first + n:
            self._sequences[tp] -= n
        for other in list(self.batches.get(tp, ())) + self.inflight_batches.get(tp, []):
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
        # In flight as Java's TransactionManager counts it: sent and not answered (an expired batch's late answer
        # still tells), or numbered and waiting to be retried, unless the leader refused it as the next batch (a
        # gap: it was not written, and it goes again in the new epoch: requestEpochBumpForPartition).
        busy = {b.tp for _, sent in self.requests.values() for b in sent}
        busy.update(tp for tp, queue in self.batches.items()
                    if tp not in self._gaps and any(b.sequence >= 0 for b in queue))
        for tp in sorted(self._unresolved):            # sorted: no hash order
            if tp in busy:
                continue
            if self._acked_seq.get(tp, -1) + 1 == self._sequences.get(tp, 0):
                self._unresolved.discard(tp)
            elif not busy:                              # the epoch is bumped with nothing in flight
                self._unresolved.clear()
                self._bump_epoch()
                return

    def _bump_epoch(self):
        # Java bumps the epoch through InitProducerId; edsim bumps it in place: same effect on the broker.
        self._unresolved: set = set()                  # partitions with an expired batch (KIP-360)
        self._gaps: set = set()
        self._acked_seq: dict[tuple, int] = {}        # highest sequence acknowledged per partition
        self.producer_epoch += 1
        self._sequences = {}
        for queue in self.batches.values():
            for batch in queue:
                batch.sequence = -1

    # ---- outcomes ---------------------------------------------------------------------------------------
    def _finish(self, batch, type_, offsets=-1, error=""):
        tp = batch.tp
        batch.done = True
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
