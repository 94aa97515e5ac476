"""Retention and compaction: what each broker does to its own replicas' logs, on Kafka's schedule.

Kafka's ``LogManager`` deletes old segments every ``log.retention.check.interval.ms`` (first 30 s after start-up):
a closed segment goes when its newest record is older than ``retention.ms``, or while the log without it is still
at least ``retention.bytes``, and never past the high watermark; the log start offset moves to the next segment.
Its ``LogCleaner`` compacts logs whose ``cleanup.policy`` includes ``compact``: when the dirty (not yet compacted)
share of a log's cleanable bytes reaches ``min.cleanable.dirty.ratio``, or a record has been dirty for
``max.compaction.lag.ms``, it keeps the last record of each key below the first uncleanable offset (the active
segment, the last stable offset, records younger than ``min.compaction.lag.ms``), then sleeps
``log.cleaner.backoff.ms`` when nothing is left to clean. Sources: Kafka's docs, "Log Compaction" and the topic
configs; ``LogCleaner``, ``LogCleanerManager.cleanableOffsets``, ``UnifiedLog.deleteOldSegments``.

Every replica cleans its own log, so replicas compact at different moments, as in Kafka. Cleaning takes no
simulated time here (Kafka's cleaner copies segments at ``log.cleaner.io.max.bytes.per.second``). What goes is
recorded in the history (``compact`` and ``retention`` rows: the records as this replica held them), so the
checker can tell a record cleaned away from a record lost.
"""
from __future__ import annotations

import numpy as np

INITIAL_DELAY = 30.0      # LogManager.InitialTaskDelayMs: the first retention check waits for start-up


class Cleaner:
    def __init__(self, broker):
        self.broker = broker
        config = broker.cluster.config
        self.enabled = config["log.cleaner.enable"]
        self.backoff = config.seconds("log.cleaner.backoff.ms")
        self.retention_interval = config.seconds("log.retention.check.interval.ms")

    def start(self):
        """Called when the broker (re)starts: its threads start again (they do nothing while no log is due)."""
        b = self.broker
        b.call_later(INITIAL_DELAY, self._retention)
        if self.enabled:
            b.call_later(self.backoff, self._clean)

    # ---- retention --------------------------------------------------------------------------------------
    def _retention(self):
        b = self.broker
        now = b.now
        for replica in b.replicas.values():
            config = replica.topic_config
            if "delete" in config["cleanup.policy"] and replica.role is not None:
                self.apply_retention(replica, now)
        b.call_later(self.retention_interval, self._retention)

    def apply_retention(self, replica, now):
        config, log = replica.topic_config, replica.log
        ms, size = config["retention.ms"], config["retention.bytes"]
        if ms < 0 and size < 0:
            return
        table = log.segment_table()
        total = sum(row[2] for row in table)
        new_start = None
        for k in range(len(table) - 1):                    # never the active segment
            base, end, nbytes, newest = table[k]
            if end > replica.hw:                           # nothing past the high watermark goes
                break
            by_time = ms >= 0 and newest >= 0 and now - newest >= ms / 1000.0
            by_size = size >= 0 and total - nbytes >= size
            if not (by_time or by_size):
                break
            total -= nbytes
            new_start = end
        if new_start is not None:
            self._record("retention", replica, log.delete_before(new_start))

    # ---- compaction -------------------------------------------------------------------------------------
    def _clean(self):
        b = self.broker
        now = b.now
        for replica in b.replicas.values():
            if replica.compacted and replica.role is not None:
                self.compact_if_due(replica, now)
        b.call_later(self.backoff, self._clean)

    def cleanable_stop(self, replica, now) -> int:
        """The first uncleanable offset, rounded down to a segment base: the cleaner cleans whole segments."""
        log, config = replica.log, replica.topic_config
        bound = min(replica.last_stable_offset, log.segments[-1])
        lag = config["min.compaction.lag.ms"] / 1000.0
        if lag > 0:
            young = next((base for base, at in zip(log._bases, log._times) if now - at < lag), log.end)
            bound = min(bound, young)
        k = max(i for i, base in enumerate(log.segments) if base <= bound)
        return log.segments[k]

    def compact_if_due(self, replica, now) -> bool:
        log, config = replica.log, replica.topic_config
        stop = self.cleanable_stop(replica, now)
        first_dirty = max(log.cleaned_to, log.start)
        if stop <= first_dirty:
            return False
        sizes = [(b.base, b.size) for b in log.batches if b.base < stop]
        cleanable = sum(s for _, s in sizes)
        dirty = sum(s for base, s in sizes if base >= first_dirty)
        max_lag = config["max.compaction.lag.ms"]
        overdue = max_lag is not None and any(
            now - at >= max_lag / 1000.0 for base, at in zip(log._bases, log._times) if first_dirty <= base < stop)
        # LogCleanerManager: cleanableRatio > minCleanableRatio (strictly), or needCompactionNow
        if not overdue and (not cleanable or dirty / cleanable <= config["min.cleanable.dirty.ratio"]):
            return False
        gone = log.compact(stop, now, config["delete.retention.ms"] / 1000.0, replica.producers.aborted)
        self._record("compact", replica, gone)
        return True

    def _record(self, f, replica, batches):
        batches = [b for b in batches if b.control is None and len(b)]
        if not batches:
            return
        offsets = np.concatenate([np.arange(b.base, b.end, dtype=np.int64) for b in batches])
        values = np.concatenate([b.values for b in batches]).astype(np.int64)
        keys = np.concatenate([b.keys for b in batches]).astype(np.int64)
        b = self.broker
        b.world.history.cleaned(b.now, b.name, f, replica.tp[0], replica.tp[1], values, keys, offsets)
