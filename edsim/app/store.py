"""State stores: a key-value table per service, sharded per input partition and backed by a changelog topic.

As Kafka Streams does it (``docs/streams/architecture``, "State"; KIP-429 for rebalances): a service's store is
split into one shard per partition of its input topic (a *task*). Shard p lives on the instance that is assigned
input partition p; every write also goes to partition p of the topic ``<service>-<store>-changelog`` (compacted,
``cleanup.policy=compact``; a deletion is a tombstone) through the instance's producer, inside its
transaction when it has one. The table itself lives in memory: a crash loses it, and the instance that is
assigned p next (the same one after its restart, or another after a rebalance) restores the shard by reading
changelog partition p from what it still holds to the end before it processes any record of task p (the task's
input partitions are paused meanwhile, as Streams pauses tasks in restoration). A shard taken away by a
rebalance stays on the instance that had it (Streams keeps the state directory), so getting it back restores only
what it missed. ``num_standby_replicas`` keeps warm copies of each shard on other instances, which read the
changelog as it grows (Streams' standby tasks), so a failover to one of them restores only the tail.

Applying a restored record costs ``RESTORE_RECORD_COST`` (10 microseconds: a batched local put, in the order of
RocksDB's; an assumption of the model, not a measurement), so restore time grows with what must be read.

Keys are whole numbers, as the model's record keys are; values are anything. A store records a ``state`` history
row for every change (the value itself when it is a whole number), which invariants such as ``never_below`` read.
"""
from __future__ import annotations

import numpy as np
import simpy

from ..clients.partitioner import partition_for
from ..configs import ConfigError
from ..kafka.log import TOMBSTONE

DELETED = object()
RESTORE_POLL = 0.005    # seconds a restoring consumer waits in one poll (it checks for the end between polls)
STANDBY_POLL = 0.05     # ... and a standby's, which only follows
RESTORE_RECORD_COST = 10e-6


class Shard:
    __slots__ = ("table", "position")

    def __init__(self):
        self.table: dict = {}
        self.position = 0            # the changelog offset it has applied up to


class StateStore:
    """One instance's view of one store (``ctx.store(name)``)."""

    def __init__(self, instance, name: str, host):
        self.instance = instance
        self.name = name
        self.host = host
        self.service = instance.service
        self.changelog = f"{self.service.name}-{name}-changelog"
        self.active: dict[int, Shard] = {}         # shards this instance owns (restored, or restoring)
        self.standby: dict[int, Shard] = {}        # warm copies of shards another instance owns
        self.retained: dict[int, Shard] = {}       # shards a rebalance took away, kept until they come back
        self.restoring: set[int] = set()
        self._pending: set[int] = set()
        self._restorer = None
        self._standby_process = None
        self._input = None                          # the input topic whose partitions shard the store

    # ---- the table -------------------------------------------------------------------------------------
    def partitions(self) -> int:
        topics = self.host.kafka.topics
        if self.changelog in topics:
            return topics[self.changelog]["partitions"]
        return topics[self._input]["partitions"] if self._input in topics else 1

    def shard_of(self, key) -> int:
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
            raise ConfigError(f"store {self.name!r} of service {self.service.name!r}: key={key!r} is not allowed: keys "
                              "are whole numbers >= 0, as record keys are")
        return partition_for(int(key), self.partitions())

    def _shard(self, key) -> Shard:
        p = self.shard_of(key)
        shard = self.active.get(p)
        if shard is None:
            shard = self.active[p] = Shard()        # a key written before any assignment (a store with no input)
        return shard

    def get(self, key, default=None):
        return self._shard(key).table.get(int(key), default)

    def put(self, key, value):
        """Change the table and write the change to the changelog (in the producer's open transaction, if any)."""
        key = int(key)
        self._shard(key).table[key] = value
        self._log(key, value)

    def delete(self, key):
        key = int(key)
        self._shard(key).table.pop(key, None)
        self._log(key, DELETED)

    def items(self) -> list[tuple]:
        """Every (key, value) of the shards this instance owns, by key."""
        return sorted(((k, v) for p in sorted(self.active) for k, v in self.active[p].table.items()),
                      key=lambda kv: kv[0])

    def __len__(self):
        return sum(len(s.table) for s in self.active.values())

    def _log(self, key, value):
        self.host.ensure_changelog(self)
        ctx = self.instance.ctx
        producer = self.host.store_producer(self.instance)
        p = self.shard_of(key)
        deleted = value is DELETED
        sent = producer.send(self.changelog, value=ctx.fresh(), key=key, payload=None if deleted else ("put", value),
                             partition=p, tombstone=deleted)
        sent.callbacks.append(lambda event, shard=self._shard(key): _written(shard, event))
        number = not deleted and isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        ctx.record("state", key=key, value=int(value) if number else -1, topic=self.name, partition=p,
                   type_="fail" if deleted else "ok", detail="" if number or deleted else repr(value)[:80])

    # ---- assignment: restore what this instance now owns -------------------------------------------------
    def bind(self, topic: str):
        """The input topic whose partitions shard this store (the first topic the instance subscribes to)."""
        if self._input is None:
            self._input = topic

    def assigned(self, partitions):
        """The instance was assigned these input partitions: restore their shards before processing them."""
        new = [p for p in partitions if p not in self.active]
        if not new:
            return
        self.host.ensure_changelog(self)
        for p in new:
            copies = [c for c in (self.standby.pop(p, None), self.retained.pop(p, None)) if c is not None]
            self.active[p] = max(copies, key=lambda c: c.position) if copies else Shard()
            self.restoring.add(p)
            self._pending.add(p)
        consumer = self.host.input_consumer(self.instance)
        if consumer is not None:           # the whole task waits: every input partition numbered p
            consumer.pause_partitions([tp for tp in consumer.assignment if tp[1] in new])
        if self._restorer is None or not self._restorer.is_alive:
            self._restorer = self.instance.env.process(self._restore(self.instance.incarnation))

    def revoked(self, partitions):
        """Partitions moved away: their shards stop serving but stay here (a standby keeps following them)."""
        for p in partitions:
            shard = self.active.pop(p, None)
            self.restoring.discard(p)
            self._pending.discard(p)
            if shard is not None:
                self.retained[p] = shard

    def crashed(self):
        """Memory is lost: every shard, active or standby (the changelog in Kafka remains)."""
        self.active, self.standby, self.retained = {}, {}, {}
        self.restoring, self._pending = set(), set()
        for process in (self._restorer, self._standby_process):
            if process is not None and process.is_alive:
                process.interrupt("crash")
        self._restorer = self._standby_process = None

    def _restore(self, incarnation):
        """Read each pending shard's changelog partition from its position to the end, then let processing in."""
        reader = self.host.restore_consumer(self.instance)
        consumer = self.host.input_consumer(self.instance)
        try:
            while self._pending and incarnation == self.instance.incarnation:
                batch = sorted(self._pending)
                self._pending -= set(batch)
                tps = [(self.changelog, p) for p in batch]
                started = self.instance.env.now
                counts = {p: 0 for p in batch}
                reader.assign(tps, {tp: self.active[tp[1]].position for tp in tps if tp[1] in self.active})
                done = set()
                while len(done) < len(batch):
                    records = yield from reader.poll(RESTORE_POLL)
                    for _topic, p, offset, _value, key, payload in records:
                        shard = self.active.get(p)
                        if shard is not None:
                            apply(shard, key, payload, offset)
                            counts[p] += 1
                    if len(records):
                        yield self.instance.env.timeout(len(records) * RESTORE_RECORD_COST)
                    for tp in tps:
                        end = reader.end_offset(tp)
                        if end is not None and reader.fetched_at.get(tp, -1) >= started \
                                and (reader.position(tp) or 0) >= end:
                            done.add(tp[1])
                    if any(p not in self.active for p in batch):        # revoked while restoring
                        done |= {p for p in batch if p not in self.active}
                finished = self.instance.env.now
                reader.assign([])
                for p in batch:
                    self.restoring.discard(p)
                    if p in self.active:
                        self.host.restored(self, p, counts[p], started, finished)
                if consumer is not None:
                    consumer.resume_partitions([tp for tp in consumer.assignment if tp[1] in batch
                                                and tp[1] in self.active])
        except simpy.Interrupt:
            return

    # ---- standby replicas ----------------------------------------------------------------------------------
    def follow(self, partitions):
        """Keep warm copies of these shards (owned by other instances) by reading their changelog partitions."""
        partitions = sorted(p for p in partitions if p not in self.active)
        for p in list(self.standby):
            if p not in partitions:
                del self.standby[p]
        for p in partitions:
            self.standby.setdefault(p, Shard())
        if not partitions:
            return
        self.host.ensure_changelog(self)
        if self._standby_process is None or not self._standby_process.is_alive:
            self._standby_process = self.instance.env.process(self._follow(self.instance.incarnation))

    def _follow(self, incarnation):
        reader = self.host.standby_consumer(self.instance)
        following = None
        try:
            while incarnation == self.instance.incarnation:
                wanted = sorted(self.standby)
                if wanted != following:
                    reader.assign([(self.changelog, p) for p in wanted],
                                  {(self.changelog, p): self.standby[p].position for p in wanted})
                    following = wanted
                if not wanted:
                    yield self.instance.env.timeout(STANDBY_POLL)
                    continue
                records = yield from reader.poll(STANDBY_POLL)
                for _topic, p, offset, _value, key, payload in records:
                    shard = self.standby.get(p)
                    if shard is not None:
                        apply(shard, key, payload, offset)
        except simpy.Interrupt:
            return


def _written(shard: Shard, event):
    """The changelog acknowledged one of the shard's own writes: the shard holds the log up to there (what a
    Streams checkpoint records), so taking the shard back after a rebalance restores only what came after."""
    if event.ok and event.value.offset >= 0:
        shard.position = max(shard.position, event.value.offset + 1)


def apply(shard: Shard, key, payload, offset):
    """One changelog record into a shard: a put, or a deletion (a tombstone)."""
    if payload is TOMBSTONE:
        shard.table.pop(int(key), None)
    elif payload is not None and payload[0] == "put":
        shard.table[int(key)] = payload[1]
    shard.position = offset + 1
