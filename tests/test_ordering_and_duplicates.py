"""The Ordering rows of shared/FIDELITY.md, and the two producer rows of "Duplicates and exactly-once" that the
simulation core covers: a lost response retried, and idempotence being per producer session.

Sources: ProducerConfig docs (`retries`, `max.in.flight.requests.per.connection`, `enable.idempotence`);
KIP-98 (idempotent producer: producer id, sequence numbers, the last 5 batches kept per partition); the Java
client's default partitioner (murmur2 of the key bytes); Kafka docs on adding partitions ("if data is
partitioned by hash(key) % number_of_partitions then this partitioning will potentially be shuffled").
"""
import numpy as np

import edsim
from edsim import faults
from edsim.clients.partitioner import partition_for

from conftest import sends, sweep_anomalies

# A request timeout short enough that a lost request or response is retried within the run.
FAST_RETRY = {"request.timeout.ms": 1000, "delivery.timeout.ms": 30000}
LOSSY_REQUESTS = [faults.drop("producer", "leader", 0.3, at=0.5, duration=1.0)]
LOSSY_RESPONSES = [faults.drop("leader", "producer", 0.3, at=0.5, duration=1.0)]


def test_retries_with_several_requests_in_flight_reorder():
    """Without idempotence, a batch that fails and is retried lands after batches sent later."""
    result = edsim.simulate(producer={"enable.idempotence": False, **FAST_RETRY}, faults=LOSSY_REQUESTS, seed=1)
    assert result.anomalies["nonmonotonic-send"] > 0
    case = result.anomaly_cases["nonmonotonic-send"].iloc[0]
    assert "sent value" in case["evidence"] and "before value" in case["evidence"]


def test_idempotence_keeps_order_with_five_in_flight(pool):
    scenario = edsim.Scenario(producer=FAST_RETRY, faults=LOSSY_REQUESTS)
    assert edsim.Scenario(producer=FAST_RETRY).producer.get("enable.idempotence", True)
    assert sweep_anomalies(scenario, pool, ("nonmonotonic-send", "duplicate")) == {}


def test_one_request_in_flight_keeps_order(pool):
    scenario = edsim.Scenario(producer={"enable.idempotence": False, "max.in.flight.requests.per.connection": 1,
                                        **FAST_RETRY}, faults=LOSSY_REQUESTS)
    assert sweep_anomalies(scenario, pool, ("nonmonotonic-send",)) == {}


def test_order_holds_per_partition_not_across_partitions():
    """Keyed records go to murmur2(key) % partitions; one consumer of three partitions reads each partition in
    offset order and each key in send order, but records of different partitions interleave."""
    result = edsim.simulate(topic={"partitions": 3}, workload={"messages": 3000, "keys": 10}, seed=1)
    assert result.anomalies["nonmonotonic-poll"] == 0 and result.anomalies["poll-skip"] == 0
    h = result.history
    reads = h[(h["f"] == "poll") & (h["process"] == "consumer-1")]
    assert reads["partition"].nunique() == 3
    for _, group in reads.groupby("key"):
        assert group["partition"].nunique() == 1                       # a key lives in one partition
        assert group["partition"].iloc[0] == partition_for(int(group["key"].iloc[0]), 3)
        assert group["value"].is_monotonic_increasing                  # ... and is read in send order
    for _, group in reads.groupby("partition"):
        assert group["offset"].is_monotonic_increasing
    values = reads["value"].to_numpy()
    assert (np.diff(values) < 0).any()                                 # across partitions: not send order


def _shop(cluster, key, producer_config, wait_after_adding):
    """40 events of one key, each after the last one's acknowledgement; the topic goes from 2 to 3 partitions
    after the 20th, and the shop waits ``wait_after_adding`` seconds before going on."""
    producer = cluster.producer(producer_config)
    acks = []

    def shop(env):
        for i in range(40):
            if i == 20:
                cluster.add_partitions("orders", 3)                # kafka-topics --alter --partitions 3
                yield env.timeout(wait_after_adding)
            metadata = yield producer.send("orders", value=i, key=key)
            acks.append(metadata)

    cluster.env.process(shop(cluster.env))
    return producer, acks


def _moving_key():
    return next(k for k in range(100) if partition_for(k, 2) != partition_for(k, 3))


def test_a_producer_learns_of_added_partitions_only_at_its_next_metadata_refresh():
    """The producer partitions by the count its metadata holds, refreshed every metadata.max.age.ms (5 minutes
    by default; Kafka's ProducerConfig: "... to proactively discover any new brokers or partitions"). Right after
    the topic grows the key still goes where it went; only once the metadata is older than that does it move."""
    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("orders", partitions=2)
    key = _moving_key()
    before, after = partition_for(key, 2), partition_for(key, 3)
    producer, acks = _shop(cluster, key, {}, wait_after_adding=0.0)
    cluster.run(until=5)
    assert [m.partition for m in acks] == [before] * 40           # the topic grew after the 20th: unknown yet
    cluster.run(until=299)
    assert producer.partition("orders", key) == before and producer.partition_count("orders") == 2
    cluster.run(until=301)                                         # metadata.max.age.ms passed: refreshed
    assert producer.partition_count("orders") == 3 and producer.partition("orders", key) == after


def test_adding_partitions_moves_a_key_and_newer_events_can_be_read_first():
    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("orders", partitions=2)
    key = _moving_key()
    before, after = partition_for(key, 2), partition_for(key, 3)
    _producer, acks = _shop(cluster, key, {"metadata.max.age.ms": 1000}, wait_after_adding=1.2)
    cluster.run(until=5)
    assert [m.partition for m in acks] == [before] * 20 + [after] * 20
    assert [m.offset for m in acks[:20]] == list(range(20)) and [m.offset for m in acks[20:]] == list(range(20))
    # A reader that takes the new partition first (nothing orders the two) reads the key's newer events first.
    consumer = cluster.consumer({"auto.offset.reset": "earliest"})
    seen = []

    def read(env):
        for p in (after, before):
            consumer.assign([("orders", p)])
            while len(seen) < (20 if p == after else 40):
                records = yield from consumer.poll(0.5)
                seen.extend(value for _t, _p, _o, value, _k, _pl in records)

    cluster.env.process(read(cluster.env))
    cluster.run(until=10)
    assert sorted(seen) == list(range(40))
    assert seen.index(20) < seen.index(0)


def test_a_lost_response_retried_without_idempotence_writes_twice():
    """The append and its replication succeed, the response is lost, the producer retries: a duplicate."""
    result = edsim.simulate(producer={"enable.idempotence": False, **FAST_RETRY}, faults=LOSSY_RESPONSES, seed=1)
    assert result.anomalies["duplicate"] > 0
    case = result.anomaly_cases["duplicate"].iloc[0]
    log = result.truth.log(0)
    assert (log["value"] == case["value"]).sum() == 2                   # the log really holds it twice


def test_idempotence_answers_a_retry_with_the_original_offset(pool):
    """The leader keeps the last 5 batches per producer and partition and answers a retried one with the
    offset it was first written at (KIP-98), so the log holds every record once."""
    scenario = edsim.Scenario(producer=FAST_RETRY, faults=LOSSY_RESPONSES)
    result = scenario.run(seed=1)
    log = result.truth.log(0)
    assert log["value"].is_unique
    ok = sends(result, "ok")
    written = dict(zip(log["value"], log["offset"]))
    assert all(written[v] == o for v, o in zip(ok["value"], ok["offset"]))
    assert result.producer_errors.get("REQUEST_TIMED_OUT", 0) > 0       # there were retries to deduplicate
    assert sweep_anomalies(scenario, pool, ("duplicate",)) == {}


RESTART = [faults.drop("leader", "producer", 1.0, at=0.9, duration=0.2),
           faults.crash("producer", at=1.0, restart_after=0.5)]


def test_idempotence_is_per_producer_session():
    """A restarted producer gets a new producer id; what it sends again is new to the broker: a duplicate,
    idempotence notwithstanding. (The workload resends what it never saw acknowledged.)"""
    result = edsim.simulate(producer=FAST_RETRY, faults=RESTART, seed=1)
    assert result.anomalies["duplicate"] > 0
    log = result.truth.log(0)
    twice = log[log["value"] == result.anomaly_cases["duplicate"].iloc[0]["value"]]
    assert len(twice) == 2 and twice["producer_id"].nunique() == 2


def test_the_same_session_retrying_writes_once():
    result = edsim.simulate(producer=FAST_RETRY, faults=RESTART[:1], seed=1)
    assert result.anomalies["duplicate"] == 0
    assert result.truth.log(0)["producer_id"].nunique() == 1
