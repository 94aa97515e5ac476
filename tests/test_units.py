"""Unit tests of the pieces everything else stands on: the partitioner's hash, the log and its leader-epoch cache,
the broker's memory of idempotent producers, and the config tables with Kafka 4.x defaults (shared FIDELITY.md)."""
import numpy as np
import pytest

import edsim
from edsim.clients import producer_config
from edsim.clients.partitioner import key_bytes, murmur2, partition_for
from edsim.configs import BROKER, CONSUMER, PRODUCER, TOPIC, Config
from edsim.kafka.log import Batch, Log, ProducerState


# ---- partitioner -----------------------------------------------------------------------------------------
# apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2
# (commit f55581dc73953c3509a4702433aeeeddc2970779): "<text>".getBytes() -> expected Utils.murmur2 value.
KAFKA_MURMUR2_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (bytes([ord("a"), ord("b"), ord("c")]), 479470107),
]


@pytest.mark.parametrize("data, expected", KAFKA_MURMUR2_VECTORS, ids=lambda v: repr(v)[:20])
def test_murmur2_matches_kafka_utils_test_vectors(data, expected):
    """Kafka's own vectors (apache/kafka ``UtilsTest.testMurmur2``), covering tails of 0, 1, 2 and 3 bytes
    (lengths 2, 6, 24, 26, 48, 3) and both signs of the Java int result."""
    assert murmur2(data) == expected


def test_murmur2_returns_a_signed_java_int():
    values = [murmur2(str(i).encode()) for i in range(2000)]
    assert all(-(1 << 31) <= v < (1 << 31) for v in values)
    assert min(values) < 0 < max(values)


@pytest.mark.parametrize("key", ["21", "foobar", "order-17", 42, "ünïcode", ""])
@pytest.mark.parametrize("n", [1, 3, 7, 12])
def test_partition_for_is_to_positive_murmur2_mod_n(key, n):
    """DefaultPartitioner / BuiltInPartitioner.partitionForKey: ``toPositive(murmur2(keyBytes)) % numPartitions``;
    keys are serialised as StringSerializer would (UTF-8 of the text)."""
    expected = (murmur2(str(key).encode("utf-8")) & 0x7FFFFFFF) % n
    assert key_bytes(key) == str(key).encode("utf-8")
    assert partition_for(key, n) == expected


def test_partition_for_known_partitions_uses_to_positive_not_abs():
    """From the Kafka vectors above: murmur2("21") = -973932308 and murmur2("foobar") = -790332482. Kafka masks
    the sign bit (Utils.toPositive); abs() would give 2, 8 and 2 instead."""
    assert partition_for("21", 3) == 0
    assert partition_for("21", 12) == 0
    assert partition_for("foobar", 12) == 6


# ---- log -------------------------------------------------------------------------------------------------
def batch(base, epoch, n, first_value=None, pid=-1, pepoch=-1, seq=-1):
    first_value = 100 + base if first_value is None else first_value
    return Batch(base, epoch, np.arange(first_value, first_value + n, dtype=np.int64), np.zeros(n, np.int64),
                 producer_id=pid, producer_epoch=pepoch, sequence=seq)


@pytest.fixture
def log():
    """Offsets 0-2 and 3-4 in epoch 0, 5-8 in epoch 2 (epoch 1 never wrote here); value = 100 + offset."""
    log = Log()
    log.append(batch(0, 0, 3))
    log.append(batch(3, 0, 2))
    log.append(batch(5, 2, 4))
    return log


def spans(batches):
    return [(b.base, b.end) for b in batches]


def test_append_moves_log_end_and_records_epochs(log):
    assert (log.start, log.end, len(log)) == (0, 9, 9)
    assert log.epochs == [(0, 0), (2, 5)]
    assert log.last_epoch == 2
    with pytest.raises(AssertionError):
        log.append(batch(8, 2, 1))                  # an overlap: appends start at the log end or after it
    log.append(batch(10, 2, 1))                     # a gap: a compacted batch copied from a leader
    assert log.end == 11 and log.read(9, 11, 10)[0].base == 10 and log.value_at(9) is None


def test_read_returns_whole_batches_and_the_first_may_start_before_the_offset(log):
    got = log.read(4, limit=9, max_records=100)
    assert spans(got) == [(3, 5), (5, 9)]
    assert got[0].base < 4
    assert [int(v) for b in got for v in b.values] == list(range(103, 109))


def test_read_stops_at_the_limit_mid_batch(log):
    assert spans(log.read(0, limit=7, max_records=100)) == [(0, 3), (3, 5), (5, 7)]
    assert spans(log.read(6, limit=7, max_records=100)) == [(5, 7)]


def test_read_respects_max_records_in_whole_batches(log):
    assert spans(log.read(0, limit=9, max_records=1)) == [(0, 3)]
    assert spans(log.read(0, limit=9, max_records=4)) == [(0, 3), (3, 5)]


def test_read_respects_max_bytes_in_whole_batches_but_always_returns_the_first(log):
    """max.partition.fetch.bytes (KIP-74): whole batches while they fit; a first batch larger than the limit
    still comes back, so a consumer is never stuck behind a big batch. Batches here: 3, 2, 4 records of 100
    bytes."""
    assert [b.size for b in log.batches] == [300, 200, 400]
    assert spans(log.read(0, limit=9, max_records=100, max_bytes=500)) == [(0, 3), (3, 5)]
    assert spans(log.read(0, limit=9, max_records=100, max_bytes=899)) == [(0, 3), (3, 5)]
    assert spans(log.read(0, limit=9, max_records=100, max_bytes=900)) == [(0, 3), (3, 5), (5, 9)]
    assert spans(log.read(0, limit=9, max_records=100, max_bytes=1)) == [(0, 3)]        # larger, still returned
    assert spans(log.read(5, limit=9, max_records=100, max_bytes=1)) == [(5, 9)]
    assert spans(log.read(0, limit=9, max_records=100)) == [(0, 3), (3, 5), (5, 9)]     # followers: no limit
    assert log.read(0, limit=7, max_records=100, max_bytes=700)[-1].size == 200         # cut at the HW: 2 left


def test_a_batch_keeps_its_record_size_when_cut_or_placed():
    b = Batch(0, 0, np.arange(10, dtype=np.int64), np.zeros(10, np.int64), record_size=1000)
    assert (b.size, b.head(4).size, b.tail(4).size, b.at(20, 1).size) == (10_000, 4000, 6000, 10_000)


def test_max_partition_fetch_bytes_bounds_what_one_fetch_returns():
    """A consumer behind by 200 records of 1000 bytes (batches of 16 records: batch.size 16384) reads them
    whole batches up to max.partition.fetch.bytes=40000 a fetch, one batch a fetch with a limit below a batch's
    size (KIP-74), and all in one fetch with Kafka's default (1 MiB)."""
    from edsim.kafka import protocol as P

    def fetches(limit):
        cluster = edsim.Cluster(brokers=3, seed=1)
        cluster.create_topic("events", partitions=1)
        producer = cluster.producer({"linger.ms": 50}, record_size=1000)
        producer.send_many("events", np.arange(200, dtype=np.int64), np.full(200, -1, np.int64),
                           np.zeros(200))
        cluster.run(until=1.0)
        config = {"auto.offset.reset": "earliest"}
        if limit is not None:
            config["max.partition.fetch.bytes"] = limit
        consumer = cluster.consumer(config, name="reader")
        got = []
        receive = consumer.receive

        def counting(message):
            if type(message) is P.FetchResponse:
                for data in message.partitions.values():
                    if data.batches:
                        got.append([len(b) for b in data.batches])
            return receive(message)

        consumer.receive = counting
        consumer.assign([("events", 0)])
        read = []

        def app():
            while True:
                records = yield from consumer.poll(0.1)
                read.extend(v for *_, v, _k, _p in records)

        cluster.env.process(app())
        cluster.run(until=3.0)
        assert sorted(read) == list(range(200))
        return got

    assert fetches(40_000) == [[16, 16]] * 5 + [[16, 16, 8]]     # 32 000 bytes, then 40 000: the 3rd fits
    assert fetches(1000) == [[16]] * 12 + [[8]]                   # 16 000 bytes > 1000: one batch a fetch
    assert len(fetches(None)) == 1


def test_max_partition_fetch_bytes_must_be_a_whole_number_of_bytes():
    with pytest.raises(edsim.ConfigError, match=r"max\.partition\.fetch\.bytes=0 is not allowed: .* >= 1"):
        Config("consumer", CONSUMER, {"max.partition.fetch.bytes": 0})


def test_read_nothing_at_or_past_the_end_or_limit(log):
    assert log.read(9, limit=9, max_records=100) == []
    assert log.read(12, limit=20, max_records=100) == []
    assert log.read(3, limit=3, max_records=100) == []


def test_value_at_and_epoch_at(log):
    assert [log.value_at(o) for o in range(9)] == list(range(100, 109))
    assert [log.epoch_at(o) for o in range(9)] == [0, 0, 0, 0, 0, 2, 2, 2, 2]
    assert log.value_at(9) is None and log.value_at(-1) is None
    assert log.epoch_at(9) == -1 and log.epoch_at(-1) == -1


def test_truncate_mid_batch_keeps_the_head_of_the_batch(log):
    log.truncate(7)
    assert log.end == 7
    assert spans(log.batches) == [(0, 3), (3, 5), (5, 7)]
    assert [log.value_at(o) for o in (5, 6, 7)] == [105, 106, None]
    assert log.epochs == [(0, 0), (2, 5)]          # epoch 2 still has records (5, 6)
    log.append(batch(7, 3, 2, first_value=500))    # the log goes on from the cut
    assert [log.value_at(o) for o in (6, 7, 8)] == [106, 500, 501]
    assert log.epochs == [(0, 0), (2, 5), (3, 7)]


def test_truncate_at_a_batch_boundary_drops_the_epoch_that_started_there(log):
    log.truncate(5)
    assert log.end == 5
    assert spans(log.batches) == [(0, 3), (3, 5)]
    assert log.epochs == [(0, 0)]
    assert log.last_epoch == 0
    assert log.read(0, 100, 100)[-1].end == 5


def test_truncate_inside_the_first_batch_and_to_zero(log):
    log.truncate(1)
    assert spans(log.batches) == [(0, 1)] and log.end == 1 and log.epochs == [(0, 0)]
    log.truncate(0)
    assert log.batches == [] and log.end == 0 and log.epochs == [] and log.last_epoch == -1


def test_truncate_at_or_past_the_end_changes_nothing(log):
    log.truncate(9)
    log.truncate(50)
    assert log.end == 9 and spans(log.batches) == [(0, 3), (3, 5), (5, 9)]


def test_assign_epoch_before_writing_kip_279(log):
    """A new leader records where its epoch starts before writing anything in it; older epochs are ignored."""
    log.assign_epoch(4, log.end)
    assert log.epochs == [(0, 0), (2, 5), (4, 9)]
    log.assign_epoch(3, 9)                          # not newer than the last: ignored
    assert log.epochs == [(0, 0), (2, 5), (4, 9)]
    log.append(batch(9, 4, 1))
    assert log.epochs == [(0, 0), (2, 5), (4, 9)]   # the batch of epoch 4 adds no second entry


def test_end_offset_for_epoch_kip_101_279(log):
    """OffsetsForLeaderEpoch: the largest epoch <= the one asked, and where it ends (the start of the next
    known epoch, or the log end for the latest)."""
    log.assign_epoch(4, log.end)
    assert log.end_offset_for_epoch(4) == (4, 9)    # the latest: ends at the log end
    assert log.end_offset_for_epoch(2) == (2, 9)    # ends where epoch 4 starts
    assert log.end_offset_for_epoch(0) == (0, 5)
    assert log.end_offset_for_epoch(1) == (0, 5)    # never had epoch 1: the largest epoch below it
    assert log.end_offset_for_epoch(3) == (2, 9)    # never had epoch 3 either
    assert log.end_offset_for_epoch(7) == (4, 9)    # newer than anything known: the latest and the log end
    assert log.end_offset_for_epoch(-1) == (-1, -1)


def test_end_offset_for_epoch_on_an_empty_log_and_before_the_first_epoch():
    log = Log()
    assert log.end_offset_for_epoch(0) == (-1, -1)
    log.append(batch(0, 3, 2))
    assert log.end_offset_for_epoch(2) == (-1, -1)  # before any epoch this log knows
    assert log.end_offset_for_epoch(3) == (3, 2)


def test_batch_head_and_tail_keep_epoch_and_sequence():
    b = batch(10, 4, 5, pid=7, pepoch=1, seq=20)
    head, tail = b.head(12), b.tail(12)
    assert (head.base, head.end, head.epoch, head.sequence) == (10, 12, 4, 20)
    assert (tail.base, tail.end, tail.epoch, tail.sequence) == (12, 15, 4, 22)
    assert list(tail.values) == [112, 113, 114]


# ---- producer state (KIP-98: the last five batches per producer and partition) ---------------------------
PID = 1001


def pbatch(seq, n=2, epoch=0, base=None):
    return batch(0 if base is None else base, 0, n, pid=PID, pepoch=epoch, seq=seq)


@pytest.fixture
def state():
    """Six batches of two records from one producer: sequences 0-1, 2-3, ..., 10-11 at offsets 0, 2, ..., 10."""
    state = ProducerState()
    for i in range(6):
        state.record(pbatch(2 * i, base=2 * i))
    return state


def test_first_batch_of_an_unknown_producer_is_appended():
    assert ProducerState().check(pbatch(0)) == ("append", None)


def test_next_sequence_is_appended(state):
    assert state.check(pbatch(12)) == ("append", None)


@pytest.mark.parametrize("seq, base", [(2, 2), (4, 4), (6, 6), (8, 8), (10, 10)])
def test_duplicate_of_one_of_the_last_five_batches_returns_its_offset(state, seq, base):
    assert state.check(pbatch(seq)) == ("duplicate", base)


def test_sixth_older_batch_is_forgotten(state):
    """Only five batches are kept (ProducerStateEntry.NUM_BATCHES_TO_RETAIN): a retry of the sixth-last is no
    longer recognised, and since its sequence is not the next one it is out of order."""
    assert state.check(pbatch(0)) == ("error", "OUT_OF_ORDER_SEQUENCE_NUMBER")


def test_duplicate_needs_the_same_sequence_range(state):
    assert state.check(pbatch(10, n=1)) == ("error", "OUT_OF_ORDER_SEQUENCE_NUMBER")


@pytest.mark.parametrize("seq", [13, 14, 20, 1])
def test_out_of_order_sequence(state, seq):
    assert state.check(pbatch(seq)) == ("error", "OUT_OF_ORDER_SEQUENCE_NUMBER")


def test_newer_producer_epoch_must_start_at_sequence_zero(state):
    assert state.check(pbatch(0, epoch=1)) == ("append", None)
    assert state.check(pbatch(12, epoch=1)) == ("error", "OUT_OF_ORDER_SEQUENCE_NUMBER")
    assert state.check(pbatch(3, epoch=1)) == ("error", "OUT_OF_ORDER_SEQUENCE_NUMBER")


def test_older_producer_epoch_is_refused(state):
    state.record(pbatch(0, epoch=1, base=12))
    assert state.check(pbatch(12, epoch=0)) == ("error", "INVALID_PRODUCER_EPOCH")
    assert state.check(pbatch(10, epoch=0)) == ("error", "INVALID_PRODUCER_EPOCH")   # even a duplicate
    assert state.check(pbatch(2, epoch=1)) == ("append", None)
    assert state.check(pbatch(0, epoch=1)) == ("duplicate", 12)


def test_producers_are_kept_apart(state):
    other = batch(0, 0, 2, pid=PID + 1, pepoch=0, seq=10)
    assert state.check(other) == ("append", None)


def test_state_rebuilt_from_the_log_recognises_the_same_duplicates():
    log = Log()
    for i in range(6):
        log.append(batch(2 * i, 0, 2, pid=PID, pepoch=0, seq=2 * i))
    log.append(batch(12, 0, 3))                      # a non-idempotent batch in between
    rebuilt = ProducerState.from_log(log)
    assert rebuilt.check(pbatch(8)) == ("duplicate", 8)
    assert rebuilt.check(pbatch(0)) == ("error", "OUT_OF_ORDER_SEQUENCE_NUMBER")
    assert rebuilt.check(pbatch(12)) == ("append", None)
    log.truncate(8)                                   # the leader lost batches 8-9 and 10-11
    rebuilt = ProducerState.from_log(log)
    assert rebuilt.check(pbatch(8)) == ("append", None)
    assert rebuilt.check(pbatch(6)) == ("duplicate", 6)


# ---- configs ---------------------------------------------------------------------------------------------
def test_config_seconds_converts_ms():
    config = Config("producer", PRODUCER, {"linger.ms": 250, "request.timeout.ms": 1500})
    assert config.seconds("linger.ms") == pytest.approx(0.25)
    assert config.seconds("request.timeout.ms") == pytest.approx(1.5)
    assert config.seconds("delivery.timeout.ms") == pytest.approx(120.0)
    assert config["linger.ms"] == 250                 # the ms value itself is kept
    assert config.explicit == {"linger.ms", "request.timeout.ms"}


PRODUCER_DEFAULTS = {
    "acks": "all", "enable.idempotence": True, "retries": 2147483647,
    "max.in.flight.requests.per.connection": 5, "delivery.timeout.ms": 120000, "request.timeout.ms": 30000,
    "linger.ms": 5, "batch.size": 16384, "transaction.timeout.ms": 60000, "metadata.max.age.ms": 300000,
}
CONSUMER_DEFAULTS = {
    "enable.auto.commit": True, "auto.commit.interval.ms": 5000, "isolation.level": "read_uncommitted",
    "auto.offset.reset": "latest", "session.timeout.ms": 45000, "heartbeat.interval.ms": 3000,
    "max.poll.interval.ms": 300000, "max.poll.records": 500, "fetch.max.wait.ms": 500,
    "metadata.max.age.ms": 300000,
}
BROKER_DEFAULTS = {
    "min.insync.replicas": 1, "unclean.leader.election.enable": False, "replica.lag.time.max.ms": 30000,
    "replica.fetch.wait.max.ms": 500, "broker.session.timeout.ms": 9000,
}
TOPIC_DEFAULTS = {"min.insync.replicas": 1, "unclean.leader.election.enable": False}


@pytest.mark.parametrize("kind, table, defaults", [
    ("producer", PRODUCER, PRODUCER_DEFAULTS),
    ("consumer", CONSUMER, CONSUMER_DEFAULTS),
    ("broker", BROKER, BROKER_DEFAULTS),
    ("topic", TOPIC, TOPIC_DEFAULTS),
])
def test_defaults_are_kafka_4x_defaults(kind, table, defaults):
    """shared FIDELITY.md, "Defaults to start from (Java client, Kafka 4.x)"."""
    config = Config(kind, table, {})
    assert {k: config[k] for k in defaults} == defaults
    assert config.explicit == set()


def test_producer_defaults_survive_kafka_post_processing():
    """ProducerConfig.postProcessAndValidateIdempotenceConfigs changes nothing about the defaults."""
    config, notes = producer_config({})
    assert notes == []
    assert {k: config[k] for k in PRODUCER_DEFAULTS} == PRODUCER_DEFAULTS


def test_clients_and_brokers_run_with_the_defaults_in_seconds():
    cluster = edsim.Cluster(brokers=3, seed=0)
    producer = cluster.producer()
    assert (producer.acks, producer.idempotent, producer.retries, producer.max_in_flight) == ("all", True,
                                                                                              2147483647, 5)
    assert producer.delivery_timeout == pytest.approx(120.0)
    assert producer.linger == pytest.approx(0.005)
    consumer = cluster.consumer()
    assert consumer.max_wait == pytest.approx(0.5)
    assert consumer.max_poll_records == 500
    assert consumer.reset_policy == "latest"
    broker = cluster.kafka.brokers[1]
    assert broker.lag_max == pytest.approx(30.0)
    assert broker.fetch_wait == pytest.approx(0.5)
    assert cluster.kafka.controller.session_timeout == pytest.approx(9.0)
    topic = cluster.create_topic("orders")
    assert (topic["partitions"], topic["min.insync.replicas"], topic["unclean.leader.election.enable"]) == (1, 1,
                                                                                                           False)


def test_topic_takes_broker_wide_defaults_unless_set():
    cluster = edsim.Cluster(brokers=3, seed=0, broker={"min.insync.replicas": 2,
                                                       "unclean.leader.election.enable": True})
    inherited = cluster.create_topic("a")
    own = cluster.create_topic("b", {"min.insync.replicas": 3, "unclean.leader.election.enable": False})
    assert (inherited["min.insync.replicas"], inherited["unclean.leader.election.enable"]) == (2, True)
    assert (own["min.insync.replicas"], own["unclean.leader.election.enable"]) == (3, False)


def test_producer_state_tracks_open_and_aborted_transactions():
    """Kafka's ProducerStateManager: the first unstable offset (open transactions, and ended ones whose marker
    is not yet below the high watermark) and the aborted-transaction index (KIP-98)."""
    import numpy as np
    from edsim.kafka.log import Batch, Log, ProducerState

    log, state = Log(), ProducerState()
    one = np.zeros(1, np.int64)

    def append(pid, control=None, seq=0):
        batch = Batch(log.end, 0, one, one, None, pid, 0, -1 if control else seq, 0.0, True, control)
        log.append(batch)
        (state.record_marker if control else state.record)(batch)

    append(7)                       # 0: pid 7 opens
    append(8)                       # 1: pid 8 opens
    assert state.first_unstable(high_watermark=2) == 0
    append(7, "ABORT")              # 2: pid 7 aborts
    assert state.first_unstable(high_watermark=2) == 0       # its marker is not below the high watermark yet
    assert state.first_unstable(high_watermark=3) == 1       # now only pid 8 holds the LSO back
    append(8, "COMMIT")             # 3
    assert state.first_unstable(high_watermark=4) is None
    assert state.aborted_between(0, 4) == ((7, 0),) and state.aborted_between(3, 4) == ()
    assert ProducerState.from_log(log).aborted == state.aborted


def test_unkeyed_records_move_on_after_batch_size_bytes_whatever_linger_closes():
    """KIP-794 (Kafka 3.3+): the sticky partition changes once batch.size bytes went to it, so a short linger.ms
    that closes small batches still spreads unkeyed records over every partition."""
    import edsim
    r = edsim.simulate(topic={"partitions": 3}, workload={"messages": 3000, "keys": 0, "rate": 1000}, seed=1)
    sent = r.history.query("f == 'send' and type == 'ok'")
    per_partition = sent["partition"].value_counts()
    assert len(per_partition) == 3 and per_partition.min() > 500
    runs = (sent.sort_values("offset").groupby("partition")["value"].apply(lambda v: v.diff().ne(1).sum()))
    assert (runs > 1).all()                      # each partition received several separate runs of records


def test_a_group_made_with_the_low_level_api_gets_its_partitions():
    """Kafka creates __consumer_offsets when a group first needs its coordinator."""
    import edsim
    c = edsim.Cluster(brokers=3, seed=1)
    c.create_topic("orders", partitions=3)
    k = c.consumer({"group.id": "billing"})
    k.subscribe(["orders"])
    c.run(until=5)                               # group.initial.rebalance.delay.ms is 3000 by default
    assert sorted(k.assignment) == [("orders", 0), ("orders", 1), ("orders", 2)]


# ---- engine and history pieces the speed work rests on -------------------------------------------------------
def test_a_cancelled_timer_does_not_fire_and_timers_fire_in_time_order():
    from edsim.engine import World
    world, fired = World(seed=1), []
    world.call_later(0.2, fired.append, "late")
    cancelled = world.call_later(0.1, fired.append, "cancelled")
    world.call_later(0.1, fired.append, "early")
    cancelled.cancel()
    world.run()
    assert fired == ["early", "late"] and world.now == pytest.approx(0.2)
    with pytest.raises(ValueError, match="delay=-1"):
        world.call_later(-1, fired.append, "past")


def test_fewer_collections_restores_the_collector_threshold_even_after_an_error():
    import gc

    from edsim.engine import fewer_collections
    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with fewer_collections():
            assert gc.get_threshold()[0] >= 200_000
            raise RuntimeError("boom")
    assert gc.get_threshold() == before


def test_history_columns_are_built_once_read_only_and_rebuilt_after_new_rows():
    from edsim.history import History
    h = History()
    h.sends(1.0, "producer", "ok", "t", 0, np.array([5, 6]), np.array([1, -1]), np.array([0.5, 0.6]), np.array([0, 1]))
    h.polls(2.0, "consumer-1", "t", 0, np.array([5]), np.array([1]), np.array([0]), h.new_op())
    first = h.columns()
    assert h.columns() is first and not first["value"].flags.writeable
    assert first["value"].tolist() == [5, 6, 5] and first["partition"].tolist() == [0, 0, 0]
    assert np.isnan(first["invoke_time"][2]) and first["invoke_time"][:2].tolist() == [0.5, 0.6]
    h.event(3.0, "nemesis", "fault", detail="crash")
    again = h.columns()
    assert again is not first and again["value"].tolist() == [5, 6, 5, -1] and again["offset"].tolist() == [0, 1, 0, -1]
    h.commits(4.0, "consumer-1", "ok", "t", [0, 1], [1, 7])
    assert h.columns()["partition"].tolist() == [0, 0, 0, -1, 0, 1] and len(h.to_frame()) == 6


# ---- KIP-580 backoff and the least-loaded node --------------------------------------------------------------------
def test_exponential_backoff_doubles_jitters_then_caps():
    """Java's ExponentialBackoff: initial × 2^attempts, times a factor in [0.8, 1.2), then capped at the maximum,
    so the cap itself is never exceeded; a maximum not above the initial wait gives a constant, unjittered wait."""
    import random
    from edsim.clients.backoff import ExponentialBackoff
    backoff = ExponentialBackoff(0.1, 1.0, random.Random(1))
    for attempts, term in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8)]:
        waits = [backoff(attempts) for _ in range(200)]
        assert 0.8 * term <= min(waits) and max(waits) < 1.2 * term and len(set(waits)) > 100
    capped = [backoff(a) for a in (4, 5, 30) for _ in range(200)]
    assert max(capped) == 1.0 and min(capped) >= 0.8        # capped after the jitter: 1.0 exactly, often
    constant = ExponentialBackoff(2.0, 1.0, random.Random(1))
    assert {constant(a) for a in range(5)} == {1.0}


def test_least_loaded_node_prefers_an_idle_connection_and_gives_none_while_all_back_off():
    """Java's NetworkClient.leastLoadedNode: a connected broker with nothing in flight first; with no connection,
    one that may be connected to now; None when every broker is in its reconnect backoff."""
    c = edsim.Cluster(brokers=3, seed=1)
    c.create_topic("t", partitions=1)
    p = c.producer({"linger.ms": 0})
    p.connected = {2, 3}
    p.inflight = {1: [2, 0.0, 30.0, None]}
    assert p.least_loaded_node() == 3
    p.inflight[2] = [3, 0.0, 30.0, None]
    p.inflight[3] = [3, 0.0, 30.0, None]
    assert p.least_loaded_node() == 2                       # the connection with fewer requests in flight
    p.connected, p.inflight = set(), {}
    p._reconnect_at = {1: c.now + 1, 2: c.now + 1}
    assert p.least_loaded_node() == 3
    p._reconnect_at[3] = c.now + 1
    assert p.least_loaded_node() is None


def test_a_power_loss_keeps_what_was_flushed_or_written_back():
    """Log.lose_unflushed: records appended at least dirty_expire seconds ago survive (the OS wrote them back), and
    so does everything below the last fsync; the rest goes, with the leader-epoch entries that start in it."""
    import simpy
    env = simpy.Environment()
    log = Log(env)
    for t, base in [(0, 0), (10, 10), (20, 20), (40, 30)]:
        env.run(until=t) if t else None
        log.append(Batch(base, base // 10, np.arange(base, base + 10), np.zeros(10, np.int64)))
    assert log.lose_unflushed(now=45.0, dirty_expire=30.0) == 20 and log.end == 20   # 0 and 10 s were written back
    assert [e for e, _ in log.epochs] == [0, 1]
    log.flush_messages = 5
    env.run(until=50)
    log.append(Batch(20, 4, np.arange(20, 25), np.zeros(5, np.int64)))            # the fifth record: an fsync
    assert log.flushed == 25
    assert log.lose_unflushed(now=51.0, dirty_expire=30.0) == 0 and log.end == 25


def test_power_loss_is_a_crash_option_that_says_so():
    from edsim import faults
    from edsim.faults import FaultError
    assert repr(faults.crash(1, at=2.0, power_loss=True)) == "faults.crash(1, at=2.0, power_loss=True)"
    with pytest.raises(FaultError, match="power_loss='yes' is not allowed"):
        faults.crash(1, at=2.0, power_loss="yes")


def test_kafka_error_code_survives_a_yield_in_a_simpy_process():
    """SimPy re-raises a failed event into the waiting process as a copy, ``type(e)(*e.args)``
    (simpy.events.Process._resume): the copy must carry the same ``code`` and message, so an application can
    match ``except KafkaError as e: if e.code == ...`` (Java: ``KafkaException`` subclasses by error)."""
    import simpy
    from edsim.clients import KafkaError
    from edsim.clients.transactions import ProducerFencedException

    env = simpy.Environment()
    caught = []

    def waiter(event):
        try:
            yield event
        except KafkaError as error:
            caught.append(error)

    for error in (KafkaError("NOT_ENOUGH_REPLICAS", "record 7 to events-0"), KafkaError("CRASHED"),
                  ProducerFencedException("PRODUCER_FENCED", "another producer took over")):
        event = env.event()
        env.process(waiter(event))
        event.fail(error)
    env.run()
    assert [e.code for e in caught] == ["NOT_ENOUGH_REPLICAS", "CRASHED", "PRODUCER_FENCED"]
    assert [str(e) for e in caught] == ["NOT_ENOUGH_REPLICAS: record 7 to events-0", "CRASHED",
                                        "PRODUCER_FENCED: another producer took over"]
    assert type(caught[2]) is ProducerFencedException and caught[2].__cause__ is not caught[2]
