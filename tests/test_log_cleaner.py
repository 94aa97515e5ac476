"""The log as long-term storage: segments, retention, compaction and tombstones (issue "The log as long-term
storage").

Sources: Kafka's documentation, "Log Compaction" (design section 4.8) and the topic configs `cleanup.policy`,
`segment.bytes`, `segment.ms`, `retention.ms`, `retention.bytes`, `min.cleanable.dirty.ratio`,
`min.compaction.lag.ms`, `max.compaction.lag.ms`, `delete.retention.ms`; the broker configs
`log.retention.check.interval.ms`, `log.cleaner.backoff.ms`; Java's `LogCleaner`, `LogCleanerManager`,
`UnifiedLog.deleteOldSegments`, `ReplicaFetcherThread` (a follower below the leader's log start starts over there),
`LogValidator` (a compacted topic refuses records without a key); KIP-534 (tombstones are kept
`delete.retention.ms` from when the cleaner first keeps them).
"""
import numpy as np
import pytest
import simpy

import edsim
from edsim import faults, invariants
from edsim.configs import ConfigError
from edsim.kafka.log import TOMBSTONE, Batch, Log

# Small segments and a lenient cleaner, so that a run of seconds is cleaned (Kafka's 1 GiB / 7 day segments
# would keep everything in the active segment, which is never cleaned).
COMPACTED = {"cleanup.policy": "compact", "segment.ms": 1000, "min.cleanable.dirty.ratio": 0.1}
CLEAN_OFTEN = {"log.cleaner.backoff.ms": 1000}


def batch(base, keys, epoch=0, payloads=None):
    keys = np.asarray(keys, np.int64)
    return Batch(base, epoch, np.arange(1000 + base, 1000 + base + len(keys), dtype=np.int64), keys, payloads)


def log_at(times_and_batches, segment_ms=float("inf")):
    env = simpy.Environment()
    log = Log(env)
    log.segment_ms = segment_ms
    for t, b in times_and_batches:
        if t:
            env.run(until=t)
        log.append(b)
    return env, log


# ---- segments ------------------------------------------------------------------------------------------------
def test_a_segment_rolls_on_segment_bytes_and_segment_ms():
    env, log = log_at([(0, batch(0, [1, 2])), (1, batch(2, [3])), (5, batch(3, [4]))], segment_ms=4.0)
    assert log.segments == [0, 3]                      # 4 s after the first segment's first batch
    log.segment_bytes = 250                            # 100-byte records: a third record would not fit
    log.append(batch(4, [5]))
    log.append(batch(5, [6]))
    assert log.segments == [0, 3, 5]
    assert log.flushed == 5                            # Kafka flushes the segment it closes


# ---- compaction, on the log itself ---------------------------------------------------------------------------
def test_compaction_keeps_the_last_record_of_each_key_and_the_offsets_keep_their_gaps():
    env, log = log_at([(0, batch(0, [1, 2, 1])), (1, batch(3, [2, 3])), (2, batch(5, [1]))])
    log.segments = [0, 5]                              # offsets 0..4 closed, 5 active
    gone = log.compact(5, now=3.0, delete_retention=100.0)
    assert sorted(o for b in gone for o in range(b.base, b.end)) == [0, 1]
    kept = [(o, log.value_at(o)) for o in range(log.start, log.end) if log.value_at(o) is not None]
    assert [o for o, _ in kept] == [2, 3, 4, 5]        # key 1's last closed record (2), key 2's (3), key 3's (4)
    assert log.read(0, 6, 100)[0].base == 2            # a read from a gap starts at the next record
    assert log.cleaned_to == 5


def test_a_tombstone_survives_delete_retention_from_when_the_cleaner_first_kept_it():
    env, log = log_at([(0, batch(0, [7, 8])),
                       (1, batch(2, [7], payloads=[TOMBSTONE])), (2, batch(3, [9]))])
    log.segments = [0, 3]
    log.compact(3, now=10.0, delete_retention=5.0)     # key 7's put goes; its tombstone is kept, from t=10
    assert log.value_at(0) is None and log.value_at(2) is not None
    log.segments = [0, 3, 4]
    log.append(batch(4, [9]))
    log.compact(4, now=14.0, delete_retention=5.0)     # 4 s later: kept
    assert log.value_at(2) is not None
    log.compact(4, now=15.0, delete_retention=5.0)     # 5 s later: gone, and key 7 with it
    assert log.value_at(2) is None


# ---- compaction, in a run ------------------------------------------------------------------------------------
def test_a_compacted_topic_keeps_the_latest_value_per_key_and_the_checker_sees_no_loss():
    result = edsim.simulate(topic=COMPACTED, broker=CLEAN_OFTEN, workload={"messages": 6000, "rate": 500, "keys": 10},
                            invariants=[invariants.latest_per_key("events")], seed=1)
    h = result.history
    compacted = h[h["f"] == "compact"]
    assert set(compacted["process"]) == {"broker-1", "broker-2", "broker-3"}    # each replica cleans its own log
    assert result.anomalies["latest-per-key:events"] == 0
    assert not any(result.anomalies[k] for k in ("lost-write", "unseen", "poll-skip", "lost-processing"))
    final = h[(h["f"] == "poll") & (h["process"] == "catch-up")]
    assert len(final) < 6000 and set(final["key"]) == set(range(10))
    log = result.truth.log(0)
    offsets = log["offset"].to_numpy()
    assert (np.diff(offsets) > 1).any()               # gaps where older records of a key were
    cleaned = log[log["offset"] < result.truth.replicas().iloc[0]["cleaned_to"]]
    assert cleaned["key"].is_unique                    # the compacted part: one record per key
    segments = result.truth.segments(0)
    assert segments.groupby("broker")["active"].sum().eq(1).all()                 # one active segment each
    assert segments["compacted"].any() and not segments[segments["active"]]["compacted"].any()
    assert result.losses().empty


def test_a_real_loss_on_a_compacted_topic_is_still_caught():
    """acks=1 and a leader that runs ahead of its followers, then dies: the acknowledged records it held alone
    are lost, compaction or not, and the checker says so."""
    schedule = [faults.partition(["leader"], ["followers"], at=0.5, heal_after=5),
                faults.crash("leader", at=1.0, restart_after=2.0)]
    result = edsim.simulate(topic=COMPACTED, producer={"acks": "1"}, broker=CLEAN_OFTEN,
                            workload={"messages": 3000, "rate": 1000, "keys": 1000}, faults=schedule, seed=1)
    assert (result.history["f"] == "compact").any()
    assert result.anomalies["lost-write"] + result.anomalies["unseen"] > 100


def test_the_dirty_ratio_and_the_compaction_lags_decide_when_a_log_is_cleaned():
    base = {"messages": 4000, "rate": 200, "keys": 10}
    never = edsim.simulate(topic={**COMPACTED, "min.cleanable.dirty.ratio": 1.0}, broker=CLEAN_OFTEN, workload=base,
                           seed=1)
    assert not (never.history["f"] == "compact").any()           # the ratio must be exceeded, and 100% cannot be
    forced = edsim.simulate(topic={**COMPACTED, "min.cleanable.dirty.ratio": 1.0, "max.compaction.lag.ms": 5000},
                            broker=CLEAN_OFTEN, workload=base, seed=1)
    assert (forced.history["f"] == "compact").any()               # max.compaction.lag.ms forces it
    lagged = edsim.simulate(topic={**COMPACTED, "min.compaction.lag.ms": 10000}, broker=CLEAN_OFTEN, workload=base,
                            seed=1)
    h = lagged.history
    removed = h[h["f"] == "compact"]
    sent_at = h[(h["f"] == "send") & (h["type"] == "ok")].set_index("value")["time"]
    assert len(removed) and (removed["time"].to_numpy() - sent_at[removed["value"]].to_numpy() >= 10.0).all()


def test_a_compacted_topic_refuses_records_without_a_key():
    result = edsim.simulate(topic=COMPACTED, workload={"messages": 200, "keys": 0}, seed=1)
    assert result.producer_errors.get("INVALID_RECORD", 0) >= 1
    assert result.counts()["acknowledged"] == 0 and result.counts()["failed"] == 200   # not retried


def test_compaction_removes_aborted_transactional_records():
    result = edsim.simulate(topic=COMPACTED, broker=CLEAN_OFTEN,
                            workload={"messages": 3000, "rate": 200, "keys": 10, "transaction_size": 50,
                                      "abort_ratio": 0.3}, seed=1)
    h = result.history
    aborted = set(h[(h["f"] == "send") & (h["type"] == "fail")]["value"])
    removed = set(h[(h["f"] == "compact") & (h["process"] == "broker-1")]["value"])
    leftover = aborted - removed
    log = result.truth.log(0, broker=1)
    cleaned_to = result.truth.replicas().set_index("broker").loc[1, "cleaned_to"]
    assert aborted and not (set(log[log["offset"] < cleaned_to]["value"]) & leftover)


def test_the_latest_per_key_invariant_fails_when_a_cleaner_keeps_the_wrong_record(monkeypatch):
    """Broken on purpose: a cleaner that, after compacting, throws away the compacted part too (and says
    nothing): the latest values of the keys written only there are gone."""
    real = Log.compact

    def overeager(self, stop, now, delete_retention, aborted=()):
        gone = real(self, stop, now, delete_retention, aborted)
        keep = [i for i, b in enumerate(self.batches) if b.base >= stop or b.control is not None]
        self.batches = [self.batches[i] for i in keep]
        self._bases = [self._bases[i] for i in keep]
        self._times = [self._times[i] for i in keep]
        return gone

    monkeypatch.setattr(Log, "compact", overeager)
    result = edsim.simulate(topic=COMPACTED, broker=CLEAN_OFTEN,
                            workload={"messages": 3000, "rate": 200, "keys": 1000},
                            invariants=[invariants.latest_per_key("events")], seed=1)
    assert result.anomalies["latest-per-key:events"] > 0


def test_a_state_stores_changelog_is_compacted():
    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("events", partitions=2)

    class Counter(edsim.Service):
        def run(self, ctx):
            counts = ctx.store("counts")
            consumer = ctx.consumer(group="counter", subscribe=["events"])
            while True:
                for r in (yield from consumer.poll(0.2)):
                    counts.put(r.key, counts.get(r.key, 0) + 1)

    cluster.service("counter", edsim.ServiceSpec(Counter))
    producer = cluster.producer()
    for i in range(20):
        producer.send("events", i, key=i % 4)
    cluster.run(until=5)
    assert cluster.kafka.topics["counter-counts-changelog"]["cleanup.policy"] == "compact"


# ---- retention ---------------------------------------------------------------------------------------------
RETAINED = {"segment.ms": 1000, "retention.ms": 5000}
CHECK_OFTEN = {"log.retention.check.interval.ms": 1000}


def test_retention_deletes_whole_old_segments_after_the_first_check_and_the_checker_sees_no_loss():
    result = edsim.simulate(topic=RETAINED, broker=CHECK_OFTEN, workload={"messages": 8000, "rate": 200}, seed=1)
    h = result.history
    deleted = h[(h["f"] == "retention") & (h["process"] == "broker-1")]
    assert deleted["time"].min() >= 30.0                # LogManager's first check waits 30 s after start-up
    replicas = result.truth.replicas()
    assert (replicas["log_start"] > 0).all()
    # what is left is the last retention.ms of writes, rounded out to whole segments
    log = result.truth.log(0)
    assert log["offset"].iloc[0] == replicas.iloc[0]["log_start"]
    assert not any(result.anomalies[k] for k in ("lost-write", "unseen", "lost-processing"))
    assert result.losses().empty


def test_retention_bytes_keeps_the_log_under_its_size():
    result = edsim.simulate(topic={"segment.bytes": 10_000, "retention.bytes": 50_000}, broker=CHECK_OFTEN,
                            workload={"messages": 3000, "rate": 50}, seed=1)
    table = result.truth.replicas()
    assert ((table["log_end"] - table["log_start"]) * 100 <= 50_000 + 10_000).all()   # plus the active segment
    assert (table["log_start"] > 0).all()


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_a_consumer_behind_retention_applies_auto_offset_reset(reset):
    """A group whose committed offset was deleted by retention: the fetch gets OFFSET_OUT_OF_RANGE and the
    consumer starts again at the log start (earliest) or its end (latest)."""
    cluster = edsim.Cluster(brokers=3, seed=1, broker={**CHECK_OFTEN, "group.initial.rebalance.delay.ms": 0})
    cluster.create_topic("events", partitions=1, **RETAINED)
    producer = cluster.producer()

    def write(env):
        for i in range(3000):
            producer.send("events", i)
            yield env.timeout(0.02)

    cluster.env.process(write(cluster.env))
    reader = cluster.consumer({"auto.offset.reset": reset})
    reader.assign([("events", 0)], {("events", 0): 0})
    reader.pause_partitions([("events", 0)])            # it falls behind
    cluster.run(until=50)
    start = cluster.kafka.brokers[1].replicas[("events", 0)].log.start
    assert start > 0
    reader.resume_partitions([("events", 0)])

    def poll(env):                                      # a consumer fetches only when its application polls
        while True:
            yield from reader.poll(0.1)
    cluster.env.process(poll(cluster.env))
    cluster.run(until=51)
    position = reader.positions[("events", 0)]
    assert position >= start if reset == "earliest" else position >= cluster.kafka.brokers[1].replicas[
        ("events", 0)].hw - 100


def test_a_follower_behind_the_leaders_log_start_starts_over_there():
    """A follower down while the leader deleted the segments it lacks cannot fetch them: it empties its log and
    starts at the leader's log start (ReplicaFetcherThread.truncateFullyAndStartAt)."""
    result = edsim.simulate(topic={"segment.ms": 1000, "retention.ms": 3000}, broker=CHECK_OFTEN,
                            workload={"messages": 12000, "rate": 200},
                            faults=[faults.crash("followers", at=5.0, restart_after=40.0)], seed=1)
    table = result.truth.replicas()
    assert table["in_isr"].all()
    assert table["log_start"].min() > 5 * 200         # none kept what the followers never fetched
    assert result.anomalies["lost-write"] == 0


# ---- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, allowed", [
    ("cleanup.policy", "shred", "'delete', 'compact' or 'compact,delete'"),
    ("retention.ms", -2, ">= 0"),
    ("min.cleanable.dirty.ratio", 1.5, "between 0 and 1"),
])
def test_bad_cleaner_settings_name_the_key_the_value_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ConfigError, match=rf"{key}={value!r} is not allowed.*{allowed}"):
        edsim.simulate(topic={key: value})
