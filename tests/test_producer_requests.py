"""Produce requests shaped as Kafka's Java producer sends them.

Sources: the Java client's ``RecordAccumulator`` (a deque of batches per partition; ``ready``: a full batch, more
than one batch, or a first batch that waited ``linger.ms``; ``drain`` / ``drainBatchesForOneNode``: the first
batch of every partition a node leads, in one request), ``Sender.sendProducerData`` (``getExpiredInflightBatches``:
``delivery.timeout.ms`` covers batches in flight, KIP-91; ``guaranteeMessageOrder`` mutes a partition while its
batch is in flight when ``max.in.flight.requests.per.connection=1``), and the broker's ``ReplicaManager
.appendRecords`` / ``DelayedProduce`` (one answer per request, once every partition has its result).
"""
import numpy as np
import pytest

import edsim
from edsim import bench, faults
from edsim.clients.producer import Producer
from edsim.engine.network import Network
from edsim.kafka import protocol as P

from conftest import sends


def test_ack_latency_is_near_kafkas_estimate_when_links_are_slow():
    """acks=all, 1,000 records/s, 10 ms links: Kafka's rule of thumb for the acknowledgement latency of a producer
    that is not saturated is 2 × linger.ms + 2 × RTT (50 ms here). Sending one request per sealed batch behind 5
    requests in flight queued hundreds of tiny batches: p50 was ~1 s."""
    figures = bench.ack_latency(records=3000)
    assert figures["acknowledged"] == 3000
    assert figures["estimate_ms"] == 50.0
    assert figures["p50_ms"] < 2 * figures["estimate_ms"]
    assert figures["p99_ms"] < 4 * figures["estimate_ms"]


@pytest.fixture
def produce_requests(monkeypatch):
    """Every ProduceRequest a producer sends: (destination, {tp: records})."""
    seen = []
    send = Network.send

    def spy(self, src, dst_name, message):
        if type(message) is P.ProduceRequest:
            seen.append((dst_name, {tp: len(b.values) for tp, b in message.partitions.items()}))
        return send(self, src, dst_name, message)

    monkeypatch.setattr(Network, "send", spy)
    return seen


def test_one_request_carries_a_batch_for_each_partition_of_its_leader(produce_requests):
    """6 partitions on 3 brokers: each request goes to one broker with the batches of the partitions it leads,
    one batch per partition; fewer requests than batches."""
    result = edsim.simulate(topic={"partitions": 6}, broker={"edsim.network.latency.ms": 10},
                            workload={"messages": 3000, "rate": 1000, "consumers": 0}, seed=1)
    assert (sends(result)["type"] == "ok").all()
    requests = [parts for _, parts in produce_requests]
    batches = sum(len(parts) for parts in requests)
    assert batches > 1.5 * len(requests)
    assert max(len(parts) for parts in requests) == 2          # each broker leads 2 of the 6 partitions
    assert sum(sum(parts.values()) for parts in requests) == 3000
    leaders = {}
    for dst, parts in produce_requests:
        for tp in parts:
            leaders.setdefault(tp, set()).add(dst)
    assert all(len(brokers) == 1 for brokers in leaders.values())   # no leader change: one broker per partition


def test_a_batch_keeps_filling_while_the_requests_in_flight_are_exhausted(produce_requests):
    """One request in flight, 10 ms links, acks=all: while a request is out (a round trip and a replication, some
    40 ms) the next batch keeps taking records instead of being sealed at linger.ms (5 ms: 10 records at 2,000/s),
    up to batch.size (163 records of 100 bytes)."""
    result = edsim.simulate(producer={"max.in.flight.requests.per.connection": 1},
                            broker={"edsim.network.latency.ms": 10},
                            workload={"messages": 4000, "rate": 2000, "consumers": 0}, seed=1)
    assert (sends(result)["type"] == "ok").all()
    sizes = np.array([n for _, parts in produce_requests for n in parts.values()])
    assert sizes.sum() == 4000 and sizes.max() <= 16384 // 100
    assert np.median(sizes) >= 50                              # 5 × what linger.ms alone would gather


def test_a_full_backlog_fills_batches_to_batch_size(produce_requests):
    """Records arrive faster than one request in flight can carry: every batch but the last leaves full."""
    edsim.simulate(producer={"max.in.flight.requests.per.connection": 1}, broker={"edsim.network.latency.ms": 10},
                   workload={"messages": 3000, "rate": 20000, "consumers": 0}, seed=1)
    sizes = [n for _, parts in produce_requests for n in parts.values()]
    assert sum(sizes) == 3000
    assert all(n == 163 for n in sizes[:-1])


SLOW_LEADER = dict(
    producer={"acks": "1", "enable.idempotence": False, "max.in.flight.requests.per.connection": 1,
              "request.timeout.ms": 20000, "delivery.timeout.ms": 20005},
    workload={"messages": 600, "rate": 200, "consumers": 0},
    # from t=1 every message to or from the leader takes ~6 s: a request and its answer take ~12 s, so the
    # batches that queue behind the one in flight are sent ~12 s after their creation and still in flight
    # when their delivery.timeout.ms (20.005 s) runs out
    faults=[faults.slow("leader", at=1.0, factor=12000, duration=60)])


def test_an_in_flight_batch_expires_at_its_delivery_timeout_not_when_its_answer_comes():
    """KIP-91: delivery.timeout.ms bounds the time from send() to the outcome, retries and requests in flight
    included (Java's Sender.getExpiredInflightBatches fails them at the deadline; the late answer is ignored).
    The batch may have been written: its records end ``info``, DELIVERY_TIMEOUT."""
    result = edsim.simulate(**SLOW_LEADER, seed=1)
    final = sends(result)
    waited = final["time"] - final["invoke_time"]
    assert waited.max() <= 20.005 + 0.001 + 1e-6              # no outcome after the deadline (+ one 1 ms step)
    expired = final[final["error"] == "DELIVERY_TIMEOUT"]
    in_flight = expired[expired["type"] == "info"]
    assert len(in_flight) > 0
    # the record that opened each expired batch was handed over as the batch was created (within a 1 ms step):
    # its outcome came at the batch's deadline, created + 20.005 s
    opened = (in_flight["time"] - in_flight["invoke_time"]).groupby(in_flight["op"]).max()
    assert ((opened >= 20.005 - 1e-6) & (opened <= 20.005 + 0.001 + 1e-6)).all()
    assert result.truth.log(0)["value"].isin(in_flight["value"]).any()   # written all the same: info was right


def test_max_in_flight_one_never_has_two_batches_of_a_partition_in_flight(monkeypatch):
    """max.in.flight.requests.per.connection=1: a partition is muted while its batch is in flight (Java's
    RecordAccumulator.mutePartition), even across a leader change, where a second connection could carry one."""
    overlaps = []
    send = Producer._send

    def spy(self, leader, drained):
        flying = {b.tp for _, sent in self.requests.values() for b in sent}
        overlaps.extend(b.tp for b in drained if b.tp in flying)
        return send(self, leader, drained)

    monkeypatch.setattr(Producer, "_send", spy)
    result = edsim.simulate(topic={"partitions": 3},
                            producer={"enable.idempotence": False, "max.in.flight.requests.per.connection": 1,
                                      "request.timeout.ms": 1000, "delivery.timeout.ms": 30000},
                            workload={"messages": 3000, "rate": 1000, "consumers": 0},
                            faults=[faults.drop("leader", "producer", 0.3, at=0.5, duration=1.0),
                                    faults.crash("leader", at=1.8, restart_after=1.0)], seed=1)
    assert result.producer_errors                              # there were retries to keep in order
    assert overlaps == []
    assert result.anomalies["nonmonotonic-send"] == 0


def test_the_broker_answers_a_multi_partition_request_once_with_a_result_per_partition():
    """ReplicaManager.appendRecords / DelayedProduce: one ProduceResponse per request, with each partition's
    error and base offset; a partition this broker does not lead is NOT_LEADER_OR_FOLLOWER on its own."""
    from edsim.kafka.log import Batch
    scenario = edsim.Scenario(topic={"partitions": 3, "replication.factor": 1}, brokers=1,
                              workload={"messages": 10, "consumers": 0}, seed=1)
    live = scenario.start()
    live.advance(1.0)
    world = live.lab.world
    broker = world.nodes["broker-1"]
    answers = []

    class Sink:
        name = "sink"
        up = True
        incarnation = 0

        def deliver(self, message, incarnation):
            answers.append(message)

    world.nodes["sink"] = Sink()
    values = np.arange(3, dtype=np.int64)
    batch = Batch(-1, -1, values, values, None, -1, -1, -1, 0.0)
    request = P.ProduceRequest(7, {("events", 0): batch, ("events", 2): batch, ("events", 9): batch}, "all", 5.0,
                               reply_to="sink")
    broker.receive(request)
    live.advance(0.5)
    assert len(answers) == 1 and answers[0].corr == 7
    results = answers[0].results
    assert results[("events", 0)][0] is None and results[("events", 2)][0] is None
    assert results[("events", 9)] == (P.NOT_LEADER_OR_FOLLOWER, -1)


def test_the_sender_loops_while_batches_are_ready_filling_the_connection_with_requests():
    """A backlog waiting for a connection leaves in up to max.in.flight.requests.per.connection requests at once:
    Sender.sendProducerData polls with timeout 0 after it sent, so it drains again at once, rather than one
    request per answer."""
    c = edsim.Cluster(brokers=3, seed=1)
    c.create_topic("t", partitions=1)
    p = c.producer({"linger.ms": 0, "batch.size": 100, "max.request.size": 100})   # one 100-byte record a request
    leader = c.kafka.leader(("t", 0))
    seen = []

    def app(env):
        for v in range(20):
            p.send("t", v, partition=0)                  # before the connection to the leader is up
        while env.now < 1.0:
            seen.append(p.in_flight.get(leader, 0))
            yield env.timeout(0.0001)
    c.env.process(app(c.env))
    c.run(until=2.0)
    assert max(seen) == 5                                # max.in.flight.requests.per.connection's default
    assert c.history.to_frame().query("f == 'send' and type == 'ok'")["value"].tolist() == list(range(20))
