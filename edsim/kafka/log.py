"""A replica's log on disk: record batches with offsets and leader epochs, and the leader-epoch cache.

Records move as batches, as Kafka's RecordBatches do: a follower appends the very batch object the leader
appended (batches are immutable), so replication costs one step per batch, not per record. Record values are
int64 ids in a numpy array; ``payloads`` optionally carries the objects an application sent.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import deque

import numpy as np

RECORD_SIZE = 100        # bytes per record when nobody said otherwise (the workload's and Cluster.producer's default)
NEVER = float("inf")


class _Tombstone:
    """A record whose value is null: on a compacted topic it deletes its key (Kafka's tombstone)."""
    __slots__ = ()

    def __repr__(self):
        return "TOMBSTONE"


TOMBSTONE = _Tombstone()      # the payload of a tombstone (``producer.send(..., tombstone=True)``)


class Batch:
    """An immutable RecordBatch: ``len(values)`` records from ``base`` on, written in leader ``epoch``, each
    ``record_size`` bytes (the producer's record size: what batch.size and max.partition.fetch.bytes count)."""

    __slots__ = ("base", "epoch", "values", "keys", "payloads", "producer_id", "producer_epoch", "sequence",
                 "created", "transactional", "control", "end", "record_size", "size")

    def __init__(self, base, epoch, values, keys, payloads=None, producer_id=-1, producer_epoch=-1,
                 sequence=-1, created=0.0, transactional=False, control=None, record_size=RECORD_SIZE):
        self.base = base
        self.epoch = epoch
        self.values = values
        self.keys = keys
        self.payloads = payloads
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.sequence = sequence
        self.created = created
        self.transactional = transactional      # written inside a transaction (KIP-98)
        self.control = control                  # None, or "COMMIT" / "ABORT": a transaction marker (one offset)
        n = len(values)
        self.end = base + n                     # the offset after the last record
        self.record_size = record_size
        self.size = n * record_size             # bytes (record headers and the batch header count as records)

    def __len__(self):
        return len(self.values)

    def at(self, base, epoch) -> "Batch":
        """This batch placed in a log at ``base`` by a leader of ``epoch``."""
        return Batch(base, epoch, self.values, self.keys, self.payloads, self.producer_id, self.producer_epoch,
                     self.sequence, self.created, self.transactional, self.control, self.record_size)

    def head(self, end) -> "Batch":
        """The records of this batch below offset ``end``."""
        k = end - self.base
        return Batch(self.base, self.epoch, self.values[:k], self.keys[:k],
                     None if self.payloads is None else self.payloads[:k],
                     self.producer_id, self.producer_epoch, self.sequence, self.created, self.transactional,
                     self.control, self.record_size)

    def tail(self, start) -> "Batch":
        """The records of this batch from offset ``start`` on."""
        k = start - self.base
        return Batch(start, self.epoch, self.values[k:], self.keys[k:],
                     None if self.payloads is None else self.payloads[k:],
                     self.producer_id, self.producer_epoch, self.sequence + k if self.sequence >= 0 else -1,
                     self.created, self.transactional, self.control, self.record_size)

    def __repr__(self):
        kind = f"{self.control} marker" if self.control else (
            "transactional, " if self.transactional else "") + f"{len(self)} records"
        return f"Batch(offsets {self.base}..{self.end - 1}, epoch {self.epoch}, {kind})"


class Log:
    """Batches in offset order; the log end offset (LEO); the leader-epoch cache (KIP-101); and what is durable.

    An append reaches the operating system's page cache, not the disk. Kafka leaves writing back to the OS unless
    ``flush.messages`` / ``flush.ms`` ask for an fsync (UnifiedLog.append, LogManager's flusher), and a segment is
    flushed when it rolls (segments are not modelled yet). Linux writes a dirty page back once it is
    ``vm.dirty_expire_centisecs`` old (30 s). So a power loss keeps the flushed part and whatever is older than
    that, and loses the rest (``lose_unflushed``); a process crash loses nothing on disk.
    """

    def __init__(self, env=None):
        self.batches: list[Batch] = []
        self._bases: list[int] = []
        self._times: list[float] = []                 # when each batch reached this log (the page cache)
        self._env = env
        self.start = 0                                # log start offset: retention moves it
        self.end = 0                                  # log end offset
        self.epochs: list[tuple[int, int]] = []       # (leader epoch, its first offset), ascending
        self.flushed = 0                              # below this offset the log is on disk for sure
        self.flushed_at = 0.0
        self.flush_messages = None                    # flush.messages: fsync once this many are unflushed
        # segments (segment.bytes, segment.ms): the base offset of each, the last one active
        self.segments: list[int] = [0]
        self.segment_bytes = NEVER
        self.segment_ms = NEVER
        self._active_bytes = 0
        self._active_since = None                     # when the active segment got its first batch
        self.cleaned_to = 0                           # the cleaner's checkpoint: below it the log is compacted
        self.tombstones_seen: dict[int, float] = {}   # tombstone offset -> when the cleaner first kept it

    def __len__(self):
        return self.end - self.start

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1][0] if self.epochs else -1

    def append(self, batch: Batch):
        # a compacted batch copied from a leader may start after our end: the offsets between were cleaned away
        assert batch.base >= self.end, (batch, self.end)
        now = self._env._now if self._env is not None else 0.0
        if self._active_bytes and (self._active_bytes + batch.size > self.segment_bytes
                                   or now - self._active_since >= self.segment_ms):
            self.segments.append(batch.base)          # roll: Kafka flushes the segment it closes
            self.flushed = max(self.flushed, batch.base)
            self._active_bytes, self._active_since = 0, None
        if self._active_since is None:
            self._active_since = now
        self._active_bytes += batch.size
        self.batches.append(batch)
        self._bases.append(batch.base)
        self._times.append(now)
        self.end = batch.end
        if batch.epoch > self.last_epoch:
            self.epochs.append((batch.epoch, batch.base))
        if self.flush_messages is not None and self.end - self.flushed >= self.flush_messages:
            self.flush()

    def flush(self):
        """fsync: everything appended so far is on disk."""
        self.flushed = self.end
        self.flushed_at = self._env._now if self._env is not None else 0.0

    def lose_unflushed(self, now: float, dirty_expire: float) -> int:
        """A power loss: keep what was flushed or written back (appended at least ``dirty_expire`` seconds
        ago), lose the rest, and return how many records went. The leader-epoch checkpoint is fsynced on every
        change, and is cut back to the surviving log, as Kafka's log recovery does (truncateFromEnd)."""
        keep = self.flushed
        cutoff = now - dirty_expire
        for base, at in zip(self._bases, self._times):
            if at > cutoff:
                keep = max(keep, base)
                break
        else:
            keep = self.end
        lost = self.end - max(keep, self.start)
        if lost > 0:
            self.truncate(keep)
        return max(lost, 0)

    def assign_epoch(self, epoch: int, offset: int):
        """A new leader records where its epoch starts, before it has written anything in it (KIP-279)."""
        if epoch > self.last_epoch:
            self.epochs.append((epoch, offset))

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """Kafka's OffsetsForLeaderEpoch: the largest epoch <= ``epoch`` this log knows and where it ends.

        Returns (-1, -1) when the log knows no such epoch."""
        i = bisect_right(self.epochs, (epoch, float("inf"))) - 1
        if i < 0:
            return -1, -1
        known = self.epochs[i][0]
        end = self.epochs[i + 1][1] if i + 1 < len(self.epochs) else self.end
        return known, end

    def truncate(self, offset: int):
        """Remove every record at ``offset`` and above (a follower whose log diverged), and every leader-epoch
        entry that starts there or later, even when no record goes (Kafka's truncateFromEnd)."""
        offset = max(offset, self.start)
        if offset < self.end:
            i = bisect_right(self._bases, offset) - 1      # the batch holding ``offset``, or -1
            if i >= 0 and self.batches[i].base < offset:   # it straddles the cut: keep its head
                kept = self.batches[i].head(offset)
                at = self._times[i]
                del self.batches[i:], self._bases[i:], self._times[i:]
                self.batches.append(kept)
                self._bases.append(kept.base)
                self._times.append(at)
            else:
                del self.batches[max(i, 0):], self._bases[max(i, 0):], self._times[max(i, 0):]
            self.end = offset
            self.flushed = min(self.flushed, offset)
            self.cleaned_to = min(self.cleaned_to, offset)
            self.segments = [b for b in self.segments if b <= offset] or [offset]
            self._reset_active()
        while self.epochs and self.epochs[-1][1] >= offset:
            self.epochs.pop()

    def read(self, offset: int, limit: int, max_records: int, max_bytes: int | None = None) -> list[Batch]:
        """The batches that hold offsets from ``offset`` up to (not including) ``limit``; at most about
        ``max_records`` records. The first batch may start before ``offset``, as Kafka returns whole batches.

        ``max_bytes`` (a consumer's max.partition.fetch.bytes): whole batches while they fit, but always the
        first one, however large, so that the reader makes progress (KIP-74, Kafka 0.10.1+)."""
        if offset >= limit or offset >= self.end:
            return []
        i = max(bisect_right(self._bases, offset) - 1, 0)
        if i < len(self.batches) and self.batches[i].end <= offset:
            i += 1                                         # ``offset`` was compacted away: the next batch on
        out, n, size = [], 0, 0
        batches = self.batches
        count = len(batches)
        while i < count and batches[i].base < limit and n < max_records:
            b = batches[i]
            if b.end > limit:
                b = b.head(limit)
            if max_bytes is not None:
                size += b.size
                if size > max_bytes and out:
                    break
            out.append(b)
            n += b.end - (b.base if b.base > offset else offset)
            i += 1
        return out

    def value_at(self, offset: int):
        """The record value at ``offset`` (None if the log has none there)."""
        if offset < self.start or offset >= self.end:
            return None
        i = bisect_right(self._bases, offset) - 1
        if i < 0 or offset >= self.batches[i].end:
            return None                                   # compacted away
        batch = self.batches[i]
        return int(batch.values[offset - batch.base])

    def epoch_at(self, offset: int) -> int:
        """The leader epoch of the record at ``offset`` (-1 if the log has none there)."""
        if offset < self.start or offset >= self.end:
            return -1
        i = bisect_right(self._bases, offset) - 1
        if i >= 0 and self.batches[i].end > offset:
            return self.batches[i].epoch
        return self.batches[i + 1].epoch if i + 1 < len(self.batches) else -1   # compacted: the next record's

    # ---- segments, retention and compaction (cleaner.py decides when) -------------------------------------
    def _reset_active(self):
        """Recount the active segment after its batches changed (truncation)."""
        lo = bisect_right(self._bases, self.segments[-1] - 1)
        self._active_bytes = sum(b.size for b in self.batches[lo:])
        self._active_since = self._times[lo] if lo < len(self._times) else None

    def _batch_range(self, k: int) -> tuple[int, int]:
        """Indices of segment ``k``'s batches: [lo, hi)."""
        lo = bisect_right(self._bases, self.segments[k] - 1)
        hi = bisect_right(self._bases, self.segments[k + 1] - 1) if k + 1 < len(self.segments) else len(self.batches)
        return lo, hi

    def segment_table(self) -> list[tuple[int, int, int, float]]:
        """(base offset, next segment's base or the log end, bytes, time of its newest batch) per segment."""
        rows = []
        for k, base in enumerate(self.segments):
            lo, hi = self._batch_range(k)
            end = self.segments[k + 1] if k + 1 < len(self.segments) else self.end
            rows.append((base, end, sum(b.size for b in self.batches[lo:hi]),
                         self._times[hi - 1] if hi > lo else -1.0))
        return rows

    def delete_before(self, offset: int) -> list[Batch]:
        """Retention: drop the segments below ``offset`` (a segment base) and move the log start there; the
        leader-epoch cache keeps the epoch that covers the new start (Kafka's truncateFromStart)."""
        k = bisect_right(self.segments, offset) - 1
        lo = bisect_right(self._bases, offset - 1)
        gone = self.batches[:lo]
        del self.batches[:lo], self._bases[:lo], self._times[:lo]
        self.segments = self.segments[max(k, 0):] or [offset]
        self.segments[0] = offset
        self.start = offset
        self.flushed = max(self.flushed, offset)
        self.cleaned_to = max(self.cleaned_to, offset)
        while len(self.epochs) > 1 and self.epochs[1][1] <= offset:
            self.epochs.pop(0)
        if self.epochs and self.epochs[0][1] < offset:
            self.epochs[0] = (self.epochs[0][0], offset)
        self.tombstones_seen = {o: t for o, t in self.tombstones_seen.items() if o >= offset}
        return gone

    def truncate_fully_and_start_at(self, offset: int):
        """Empty the log and start it at ``offset`` (a follower behind its leader's log start)."""
        self.truncate(self.start)
        self.delete_before(offset)
        self.end = max(self.end, offset)

    def compact(self, stop: int, now: float, delete_retention: float, aborted=()) -> list[Batch]:
        """Kafka's log cleaner on [start, ``stop``) (``stop`` a segment base): the latest offset of each key in the
        dirty part [cleaned_to, stop) wins, and every older record of that key goes; offsets keep their gaps. A
        tombstone that wins is kept for ``delete_retention`` seconds after the cleaner first kept it (KIP-534),
        then goes too. Records of aborted transactions (``aborted``: (pid, first, marker) ranges) go; transaction
        markers stay. Returns the removed records as batches (their offsets, values and keys)."""
        lo, hi = 0, bisect_right(self._bases, stop - 1)
        dirty_from = bisect_right(self._bases, self.cleaned_to - 1)
        latest: dict[int, int] = {}
        for b in self.batches[dirty_from:hi]:
            if b.control is None:
                latest.update(zip(b.keys.tolist(), range(b.base, b.end)))
        kept, gone, bases, times = [], [], [], []
        seen = self.tombstones_seen
        for b, at in zip(self.batches[lo:hi], self._times[lo:hi]):
            if b.control is not None:
                kept.append(b), bases.append(b.base), times.append(at)
                continue
            offsets = np.arange(b.base, b.end)
            winner = np.fromiter((latest.get(k, o) for k, o in zip(b.keys.tolist(), offsets.tolist())),
                                 np.int64, len(b))
            keep = winner <= offsets
            if b.transactional and any(pid == b.producer_id and first <= b.base <= marker
                                       for pid, first, marker in aborted):
                keep[:] = False
            if b.payloads is not None:
                for i in np.flatnonzero(keep).tolist():
                    if b.payloads[i] is TOMBSTONE:
                        first_kept = seen.setdefault(b.base + i, now)
                        if now - first_kept >= delete_retention:
                            keep[i] = False
            if keep.all():
                kept.append(b), bases.append(b.base), times.append(at)
                continue
            for run in _runs(~keep):
                gone.append(b.tail(b.base + run[0]).head(b.base + run[1]))
            for run in _runs(keep):
                piece = b.tail(b.base + run[0]).head(b.base + run[1])
                kept.append(piece), bases.append(piece.base), times.append(at)
        self.batches[lo:hi], self._bases[lo:hi], self._times[lo:hi] = kept, bases, times
        self.cleaned_to = max(self.cleaned_to, stop)
        for b in gone:
            for o in range(b.base, b.end):
                seen.pop(o, None)
        return gone


def _runs(mask) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask, [False])).astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


class ProducerState:
    """What a partition's replica knows of each idempotent or transactional producer (Kafka's
    ProducerStateManager): its epoch and last five batches, and the transactions still open here.

    Rebuilt from the log after a restart or truncation, as Kafka rebuilds its producer-state snapshot, so a
    retry after failover is still recognised as a duplicate (KIP-98; 5 batches: ProducerStateEntry), and a new
    leader knows which transactions are open (the last stable offset) and which were aborted (the aborted
    transaction index that read_committed fetches carry).
    """

    KEEP = 5

    def __init__(self):
        self.producers: dict[int, tuple[int, deque]] = {}   # pid -> (epoch, deque of (first seq, last seq, base))
        self.ongoing: dict[int, int] = {}                   # pid -> first offset of its open transaction
        self.completed: deque = deque()                     # (first offset, marker end) of ended transactions
        self.aborted: list[tuple[int, int, int]] = []       # (pid, first offset, marker offset), by marker offset

    @classmethod
    def from_log(cls, log: Log) -> "ProducerState":
        state = cls()
        for batch in log.batches:
            if batch.control is not None:
                state.record_marker(batch)
            elif batch.producer_id >= 0:
                state.record(batch)
        return state

    def record(self, batch: Batch):
        pid = batch.producer_id
        entry = self.producers.get(pid)
        if entry is None or entry[0] < batch.producer_epoch:
            entry = self.producers[pid] = (batch.producer_epoch, deque(maxlen=self.KEEP))
        if batch.sequence >= 0:
            entry[1].append((batch.sequence, batch.sequence + len(batch) - 1, batch.base))
        if batch.transactional and pid not in self.ongoing:
            self.ongoing[pid] = batch.base

    def record_marker(self, batch: Batch):
        """A COMMIT or ABORT marker ends the producer's transaction on this partition. A marker of a newer
        epoch (KIP-890 bumps it at every transaction's end) fences writes of the older one."""
        pid = batch.producer_id
        entry = self.producers.get(pid)
        if entry is None or entry[0] < batch.producer_epoch:
            self.producers[pid] = (batch.producer_epoch, deque(maxlen=self.KEEP))
        first = self.ongoing.pop(pid, None)
        if first is not None:
            self.completed.append((first, batch.end))
            if batch.control == "ABORT":
                self.aborted.append((pid, first, batch.base))

    def check_marker(self, producer_id, producer_epoch):
        """None, or INVALID_PRODUCER_EPOCH for a marker older than what this replica has seen."""
        entry = self.producers.get(producer_id)
        return "INVALID_PRODUCER_EPOCH" if entry is not None and producer_epoch < entry[0] else None

    def first_unstable(self, high_watermark: int):
        """The first offset of a transaction that is open, or ended by a marker not yet below the high
        watermark (Kafka's firstUnstableOffset); None if there is none."""
        done = self.completed
        while done and done[0][1] <= high_watermark:
            done.popleft()
        first = min(self.ongoing.values()) if self.ongoing else None
        for start, _end in done:
            if first is None or start < first:
                first = start
        return first

    def aborted_between(self, start: int, end: int) -> tuple:
        """(pid, first offset) of the aborted transactions with records in [start, end): what a read_committed
        fetch of that range must drop (Kafka's FetchResponse abortedTransactions)."""
        return tuple((pid, first) for pid, first, marker in self.aborted if first < end and marker >= start)

    def check(self, batch: Batch):
        """("append", None) | ("duplicate", base offset) | ("error", code)."""
        entry = self.producers.get(batch.producer_id)
        if entry is None:
            return "append", None
        epoch, recent = entry
        if batch.producer_epoch < epoch:
            return "error", "INVALID_PRODUCER_EPOCH"
        if batch.sequence < 0:                 # written by a coordinator for the producer: no sequence
            return "append", None
        if batch.producer_epoch > epoch:
            return ("append", None) if batch.sequence == 0 else ("error", "OUT_OF_ORDER_SEQUENCE_NUMBER")
        for first, last, base in recent:
            if first == batch.sequence and last == batch.sequence + len(batch) - 1:
                return "duplicate", base
        last_seq = recent[-1][1] if recent else -1
        if batch.sequence != last_seq + 1:
            return "error", "OUT_OF_ORDER_SEQUENCE_NUMBER"
        return "append", None
