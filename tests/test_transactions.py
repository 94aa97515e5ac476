"""Transactions and exactly-once: the rows "Duplicates and exactly-once" of FIDELITY.md.

Sources: KIP-98 (transactions: coordinator, markers, LSO, read_committed, zombie fencing by epoch), KIP-447
(exactly_once_v2: offsets committed in the transaction, fenced by the group generation; unstable offsets),
KIP-890 (transaction.version 2: the epoch is bumped at the end of every transaction, so a late write of a
finished transaction is refused instead of hanging or landing in the next one), Confluent's "Transactions in
Apache Kafka" (CB: the cost is per transaction, not per record), Jepsen's Kafka checker (G1a,
precommitted-read, G1c).
"""
import numpy as np
import pytest

import edsim
from edsim import apps
from edsim import faults
from edsim.checker import check
from edsim.clients import KafkaError
from edsim.clients.transactions import ProducerFencedException, TransactionStateError
from edsim.kafka.coordinator import offsets_partition
from edsim.kafka.transactions import TXN_TOPIC


def reader(cluster, name, isolation, tps):
    consumer = cluster.consumer({"isolation.level": isolation, "auto.offset.reset": "earliest"}, name=name)
    consumer.assign(tps)

    def loop(env):
        while True:
            yield from consumer.poll(0.2)
    cluster.env.process(loop(cluster.env))
    return consumer


def read(cluster, name):
    h = cluster.history.to_frame()
    return h[(h["f"] == "poll") & (h["process"] == name)]["value"].tolist()


def log_of(cluster, tp):
    replica = cluster.kafka.brokers[cluster.kafka.leader(tp)].replicas[tp]
    return replica, [(b.base, b.control or [int(v) for v in b.values]) for b in replica.log.batches]


def coordinator_of(cluster, transactional_id):
    return cluster.kafka.leader((TXN_TOPIC, offsets_partition(transactional_id, 50)))


# ---- aborted transactions ---------------------------------------------------------------------------------
def test_aborted_records_stay_in_the_log_and_only_read_uncommitted_sees_them():
    """FIDELITY: a transactional producer over 2 partitions aborts: its records stay in the log, every marker
    takes an offset, read_uncommitted reads them (G1a), read_committed never does."""
    c = edsim.Cluster(brokers=3, seed=2)
    c.create_topic("orders", partitions=2)
    p = c.producer({"transactional.id": "shop"})
    tps = [("orders", 0), ("orders", 1)]
    reader(c, "dirty", "read_uncommitted", tps)
    reader(c, "clean", "read_committed", tps)

    def app(env):
        yield from p.init_transactions()
        p.begin_transaction()
        for v in (1, 2):
            yield p.send("orders", v, partition=v - 1)
        yield from p.abort_transaction()
        p.begin_transaction()
        for v in (3, 4):
            p.send("orders", v, partition=v - 3)
        yield from p.commit_transaction()
    c.env.process(app(c.env))
    c.run(until=5)
    for p_ in (0, 1):
        _, log = log_of(c, ("orders", p_))
        assert log == [(0, [1 + p_]), (1, "ABORT"), (2, [3 + p_]), (3, "COMMIT")]   # markers take offsets
    assert sorted(read(c, "dirty")) == [1, 2, 3, 4]
    assert sorted(read(c, "clean")) == [3, 4]
    report = check(c.history)
    assert report.anomalies["G1a"] == 2
    assert set(report.cases["G1a"]["process"]) == {"dirty"}
    assert "in a transaction that aborted" in report.cases["G1a"]["evidence"].iloc[0]
    assert report.anomalies["lost-write"] == 0 and report.anomalies["poll-skip"] == 0


def test_workload_aborts_show_as_g1a_only_for_read_uncommitted():
    base = edsim.Scenario(workload={"messages": 600, "transaction_size": 10, "abort_ratio": 0.3}, seed=4)
    dirty = base.run()
    clean = base.replace(consumer={"isolation.level": "read_committed"}).run()
    aborted = (dirty.transactions()["outcome"] == "aborted").sum()
    assert aborted > 5
    assert dirty.anomalies["G1a"] > 0
    assert {k: v for k, v in clean.anomalies.items() if v} == {}
    assert clean.counts()["acknowledged"] == 600 - 10 * aborted


def test_the_coordinator_aborts_a_dead_producers_transaction_after_its_timeout():
    """FIDELITY: the producer dies mid-transaction; the coordinator aborts it once transaction.timeout.ms has
    passed (found by its check every transaction.abort.timed.out.transaction.cleanup.interval.ms)."""
    c = edsim.Cluster(brokers=3, seed=3)
    c.create_topic("orders", partitions=2)
    p = c.producer({"transactional.id": "shop", "transaction.timeout.ms": 5000})
    tps = [("orders", 0), ("orders", 1)]
    clean = reader(c, "clean", "read_committed", tps)

    def app(env):
        yield from p.init_transactions()
        p.begin_transaction()
        yield p.send("orders", 1, partition=0)
        yield p.send("orders", 2, partition=1)
        p.crash()
    c.env.process(app(c.env))
    c.run(until=4.0)
    assert [clean.end_offset(tp) for tp in tps] == [0, 0]          # LSO held at the open transaction
    c.run(until=30)
    for tp in tps:
        replica, log = log_of(c, tp)
        assert log[-1][1] == "ABORT" and replica.last_stable_offset == 2
    ended = c.history.to_frame()
    assert read(c, "clean") == []
    marker_time = min(b.created for tp in tps for b in log_of(c, tp)[0].log.batches if b.control)
    assert 5.0 < marker_time < 5.0 + 10.0 + 1.0
    assert (ended["f"] == "txn").sum() == 1 and ended[ended["f"] == "txn"]["type"].iloc[0] == "info"


# ---- the last stable offset ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ending", ["commit", "abort", "timeout"])
def test_an_open_transaction_holds_read_committed_consumers_at_the_lso(ending):
    """A producer opens a transaction and stalls: read_committed consumers stop at its first offset, records of
    other, non-transactional producers after it included, until commit, abort or the coordinator's timeout."""
    c = edsim.Cluster(brokers=3, seed=5)
    c.create_topic("orders", partitions=1)
    txn = c.producer({"transactional.id": "slow", "transaction.timeout.ms": 8000}, name="txn")
    plain = c.producer({}, name="plain")
    clean = reader(c, "clean", "read_committed", [("orders", 0)])
    dirty = reader(c, "dirty", "read_uncommitted", [("orders", 0)])

    def app(env):
        yield from txn.init_transactions()
        txn.begin_transaction()
        yield txn.send("orders", 100, partition=0)
        for v in range(5):
            yield plain.send("orders", v, partition=0)
        yield env.timeout(4.0)                       # stalled
        if ending == "commit":
            yield from txn.commit_transaction()
        elif ending == "abort":
            yield from txn.abort_transaction()
    c.env.process(app(c.env))
    c.run(until=3.0)
    assert read(c, "clean") == []
    assert sorted(read(c, "dirty")) == [0, 1, 2, 3, 4, 100]
    assert clean.end_offset(("orders", 0)) == 0 and dirty.end_offset(("orders", 0)) == 6
    c.run(until=30)
    expected = [100, 0, 1, 2, 3, 4] if ending == "commit" else [0, 1, 2, 3, 4]
    assert read(c, "clean") == expected
    released = c.history.to_frame().query("process == 'clean' and f == 'poll'")["time"].min()
    assert (released < 5.0) if ending != "timeout" else (8.0 < released < 20.0)


class OpensAndStalls(edsim.Service):
    """Opens a transaction, writes one record in it, and never ends it."""
    timeout_ms = 60000

    def run(self, ctx):
        p = ctx.producer({"transactional.id": "stalls", "transaction.timeout.ms": self.timeout_ms})
        yield from p.init_transactions()
        p.begin_transaction()
        yield p.send("orders", value=ctx.fresh(), partition=0)
        yield from ctx.sleep(1e9)


def test_the_final_reader_waits_for_an_open_transaction_to_time_out():
    """A transaction stays open; what other producers write after it is behind the last stable offset until the
    coordinator aborts it (transaction.timeout.ms, found within one cleanup interval). The run's final
    read_committed reader waits for that, so those records are read, not unseen, even when the timeout is longer
    than the catch-up's own 60 s limit."""
    r = edsim.Scenario(
        topics={"orders": {"partitions": 1}},
        consumer={"isolation.level": "read_committed"},
        services={"stalls": edsim.service(OpensAndStalls, timeout_ms=90_000),
                  "load": apps.Load(topic="orders", rate=100, messages=50)},
        seed=5).run()
    assert {k: v for k, v in r.anomalies.items() if v} == {} and not r.notes
    read = r.history.query("process == 'catch-up' and f == 'poll' and type == 'ok'")
    assert (read["time"] > 90.0).sum() > 0                         # the rest was held at the LSO until the abort
    assert 90.0 < r.duration < 90.0 + 10.0 + 5.0


# ---- two-phase commit survives the coordinator ----------------------------------------------------------------
def test_a_transaction_prepared_before_the_coordinator_dies_still_commits(monkeypatch):
    """KIP-98: once PrepareCommit is in __transaction_state, the new coordinator finishes the commit."""
    from edsim.kafka import transactions
    c = edsim.Cluster(brokers=3, seed=6)
    c.create_topic("orders", partitions=2)
    p = c.producer({"transactional.id": "shop"})
    clean = reader(c, "clean", "read_committed", [("orders", 0), ("orders", 1)])
    crashed = []
    original = transactions.TransactionCoordinator._send_markers

    def crash_first(self, txn):
        if not crashed and txn.state == "PrepareCommit":
            crashed.append(self.broker.id)
            self.broker.crash()                      # after PrepareCommit is written, before any marker
            return
        original(self, txn)
    monkeypatch.setattr(transactions.TransactionCoordinator, "_send_markers", crash_first)

    def app(env):
        yield from p.init_transactions()
        p.begin_transaction()
        p.send("orders", 1, partition=0)
        p.send("orders", 2, partition=1)
        yield from p.commit_transaction()            # answered after the prepare, before the markers
    c.env.process(app(c.env))
    c.run(until=30)
    assert crashed, "the coordinator never reached PrepareCommit"
    assert coordinator_of(c, "shop") != crashed[0]
    assert sorted(read(c, "clean")) == [1, 2]
    assert clean is not None and check(c.history).valid


# ---- zombie fencing -----------------------------------------------------------------------------------------
def _zombie(same_id):
    c = edsim.Cluster(brokers=3, seed=7)
    c.create_topic("orders", partitions=1)
    first = c.producer({"transactional.id": "shop-1"}, name="first")
    second = c.producer({"transactional.id": "shop-1" if same_id else "shop-2"}, name="second")
    reader(c, "clean", "read_committed", [("orders", 0)])
    seen = {}

    def instance(env, producer, start, pause):
        yield env.timeout(start)
        yield from producer.init_transactions()
        seen[producer.name + " epoch"] = producer.producer_epoch
        producer.begin_transaction()
        producer.send("orders", 7, partition=0)      # both instances process the same input
        if pause:
            producer.pause()                         # a long GC pause: the zombie
            yield env.timeout(3.0)
            producer.resume()
        try:
            yield from producer.commit_transaction()
            seen[producer.name] = "committed"
        except KafkaError as error:
            seen[producer.name] = type(error).__name__
    c.env.process(instance(c.env, first, 0.0, True))
    c.env.process(instance(c.env, second, 1.0, False))
    c.run(until=20)
    return c, seen


def test_zombie_fencing_with_the_same_transactional_id():
    """FIDELITY: the second instance's initTransactions bumps the epoch and aborts the first's transaction; the
    zombie's commit fails as fenced; downstream sees the result once."""
    c, seen = _zombie(same_id=True)
    assert seen["second epoch"] == seen["first epoch"] + 1
    assert seen == {**seen, "first": "ProducerFencedException", "second": "committed"}
    assert read(c, "clean") == [7]
    assert check(c.history).anomalies["duplicate"] == 0


def test_without_a_shared_transactional_id_the_zombie_duplicates():
    c, seen = _zombie(same_id=False)
    assert seen["first"] == seen["second"] == "committed"
    assert read(c, "clean") == [7, 7]
    assert check(c.history).anomalies["duplicate"] == 1


def test_a_fenced_producer_cannot_send_commit_or_abort():
    c, _ = _zombie(same_id=True)
    first = c.producers["first"]
    with pytest.raises(TransactionStateError, match="fenced"):
        first.send("orders", 8)
    with pytest.raises(ProducerFencedException):
        next(first.abort_transaction())


# ---- KIP-890 --------------------------------------------------------------------------------------------------
def _delayed_write(version):
    """A write of an aborted transaction is stuck on its way for 5 s and lands after the ABORT marker."""
    c = edsim.Cluster(brokers=3, seed=1, broker={"transaction.version": version})
    c.create_topic("orders", partitions=3)
    p = c.producer({"transactional.id": "shop", "request.timeout.ms": 1000, "delivery.timeout.ms": 1500,
                    "linger.ms": 0, "retry.backoff.ms": 1000})
    coordinator = coordinator_of(c, "shop")
    part = next(q for q in range(3) if c.kafka.leader(("orders", q)) != coordinator)
    reader(c, "clean", "read_committed", [("orders", part)])

    def app(env):
        yield from p.init_transactions()
        p.begin_transaction()
        yield p.send("orders", 1, partition=part)
        # what the producer sends in the next 10 ms takes 5 s to arrive
        c.inject(faults.slow("producer", at=env.now, factor=10_000, duration=0.01))
        yield env.timeout(0)
        p.send("orders", 2, partition=part)
        try:
            yield from p.commit_transaction()
        except KafkaError:
            yield from p.abort_transaction()         # the batch expired (delivery.timeout.ms): abort
        # the next transaction starts once the late write has surely landed: it takes 5 s plus the network's
        # jitter x 10,000 (exponential, mean 1 s), so its arrival moves with every draw of the network's stream
        yield env.timeout(12.0)
        p.begin_transaction()
        p.send("orders", 3, partition=part)
        yield from p.commit_transaction()
    c.env.process(app(c.env))
    c.run(until=26)
    return c, log_of(c, ("orders", part))[1]


def test_kip890_refuses_a_late_write_of_an_ended_transaction():
    c, log = _delayed_write(version=2)
    assert [entry[1] for entry in log] == [[1], "ABORT", [3], "COMMIT"]
    assert read(c, "clean") == [3]
    assert check(c.history).valid


def test_before_kip890_a_late_write_lands_in_the_next_transaction():
    """transaction.version 1: the epoch stays, so the late write follows the ABORT marker, opens a transaction
    of its own on the partition, and the next transaction's COMMIT marker commits it (KIP-890's motivation)."""
    c, log = _delayed_write(version=1)
    assert [entry[1] for entry in log] == [[1], "ABORT", [2], [3], "COMMIT"]
    assert read(c, "clean") == [2, 3]
    report = check(c.history)
    assert report.anomalies["G1a"] == 1 and report.cases["G1a"]["value"].tolist() == [2]


# ---- consume-transform-produce ----------------------------------------------------------------------------------
PIPELINE = edsim.Scenario(
    workload={"messages": 3000, "consumers": 2, "pipeline": "at_least_once"},
    consumer={"isolation.level": "read_committed", "session.timeout.ms": 6000, "heartbeat.interval.ms": 2000},
    faults=[faults.crash("consumer-1", at=1.5, restart_after=1.0)], seed=3)


def test_one_call_compares_the_guarantees():
    """The issue's done-when as a notebook would write it: one sweep, one row per guarantee."""
    table = edsim.sweep(PIPELINE, seeds=[3], vary={"workload.pipeline": ["at_least_once", "exactly_once_v2"]})
    alo, eos = table.iloc[0], table.iloc[1]
    assert alo["duplicate"] > 0 and alo["pipeline: outputs duplicated"] > 0
    assert eos["duplicate"] == 0 and eos["pipeline: outputs duplicated"] == 0
    assert eos["pipeline: outputs exactly once"] == 3000
    assert eos["transactions"] > 0 and eos["pipeline: output latency p50 (ms)"] > 0
    assert eos["pipeline: output throughput (records/s)"] > 0


def test_consume_transform_produce_under_a_consumer_crash():
    """FIDELITY + the issue's done-when: the same pipeline and crash, twice. at_least_once writes outputs
    again (duplicates downstream); exactly_once_v2 aborts the crashed transaction, its input offsets did not
    advance, and downstream (read_committed) sees each result exactly once."""
    alo = PIPELINE.run()
    eos = PIPELINE.replace(**{"workload.pipeline": "exactly_once_v2"}).run()
    assert alo.anomalies["duplicate"] > 0 and alo.pipeline()["outputs duplicated"] > 0
    assert {k: v for k, v in eos.anomalies.items() if v} == {}
    report = eos.pipeline()
    assert report["outputs exactly once"] == report["inputs acknowledged"] == 3000
    assert report["outputs duplicated"] == report["outputs missing"] == 0
    txns = eos.transactions()
    assert (txns["outcome"] != "committed").any()          # the crashed member's transaction did not commit
    crashed = txns[txns["outcome"] != "committed"]
    assert set(crashed["process"]) == {"consumer-1.producer"}


def test_read_uncommitted_downstream_of_exactly_once_sees_aborted_outputs():
    """A zombie (paused past its session timeout) sends its buffered outputs when it wakes, then its offsets
    commit is refused (KIP-447) and its transaction aborts: the outputs stay in the log, aborted. A crash
    0.6 ms into a transaction leaves nothing of it in the log, so no reader sees anything."""
    downstream = PIPELINE.replace(**{"workload.pipeline": "exactly_once_v2",
                                     "consumer.isolation.level": "read_uncommitted"})
    zombie = downstream.replace(faults=[faults.pause("consumer-1", at=1.5, duration=8.0)])
    assert zombie.run().anomalies["G1a"] > 0
    assert zombie.replace(**{"consumer.isolation.level": "read_committed"}).run().anomalies["G1a"] == 0
    assert downstream.run().anomalies["G1a"] == 0


def test_a_member_that_has_read_nothing_loses_nothing_to_its_first_assignment():
    """The member begins its transaction before the group's first assignment reaches it; the offsets carry the
    generation its first records were read in, so the first transaction commits. Kafka Streams begins a
    transaction only at its first send (StreamsProducer.maybeBeginTransaction) and passes the consumer's
    group metadata at commit: nothing read before the assignment, nothing to fence."""
    steady = PIPELINE.replace(**{"workload.pipeline": "exactly_once_v2"}, faults=[])
    result = steady.run()
    txns = result.transactions()
    assert len(txns) > 0 and (txns["outcome"] == "committed").all()
    h = result.history
    first_assignment = h[(h["f"] == "assign") & (h["process"] == "consumer-1") & (h["partition"] >= 0)]["time"].min()
    first = txns[(txns["process"] == "consumer-1.producer") & (txns["records"] > 0)].iloc[0]
    assert first["begin"] < first_assignment                 # began before the assignment, and still committed
    assert result.anomalies["G1a"] == 0 and result.pipeline()["outputs exactly once"] == 3000


def test_a_zombie_member_is_fenced_by_the_group_generation():
    """KIP-447: a member paused past its session timeout finds its partitions reassigned; its transaction's
    offsets carry the old generation, so TxnOffsetCommit fails and the transaction aborts: no duplicates.
    The same pause under at_least_once duplicates."""
    zombie = PIPELINE.replace(faults=[faults.pause("consumer-1", at=1.5, duration=8.0)])
    alo = zombie.run()
    eos = zombie.replace(**{"workload.pipeline": "exactly_once_v2"}).run()
    assert alo.pipeline()["outputs duplicated"] > 0
    assert eos.pipeline()["outputs duplicated"] == eos.pipeline()["outputs missing"] == 0
    assert eos.anomalies["duplicate"] == 0
    fenced = eos.history[(eos.history["f"] == "txn") & (eos.history["type"] == "fail")]
    assert len(fenced) >= 1


# ---- cost ---------------------------------------------------------------------------------------------------------
def test_the_cost_of_a_transaction_is_per_transaction_not_per_record():
    """CB: a transaction costs a few coordinator round trips and one marker per partition, whatever its size."""
    def markers(size):
        r = edsim.simulate(workload={"messages": 1200, "transaction_size": size, "keys": 0},
                           topic={"partitions": 2}, seed=8)
        return sum(1 for b in _leader_batches(r) if b.control), len(r.transactions())
    small, n_small = markers(10)
    large, n_large = markers(100)
    assert n_small == 10 * n_large
    assert small <= 2 * n_small and large <= 2 * n_large       # at most one marker per partition per transaction
    assert small > 4 * large


def _leader_batches(result):
    kafka = result.truth._kafka
    for tp in kafka.partitions("events"):
        yield from kafka.brokers[kafka.leader(tp)].replicas[tp].log.batches


def test_exactly_once_outputs_wait_for_the_commit():
    """The price in latency: an output is visible when its transaction commits, up to a commit interval later
    than at_least_once makes it visible."""
    base = PIPELINE.replace(faults=[], **{"workload.commit_interval": 0.2})
    alo, eos = base.run(), base.replace(**{"workload.pipeline": "exactly_once_v2"}).run()
    p50 = {name: r.pipeline()["output latency p50 (ms)"] for name, r in (("alo", alo), ("eos", eos))}
    assert p50["eos"] > p50["alo"] + 50
    assert eos.pipeline()["outputs exactly once"] == alo.pipeline()["outputs exactly once"] == 3000


# ---- API errors ---------------------------------------------------------------------------------------------------
def test_transaction_methods_need_a_transactional_id():
    c = edsim.Cluster(brokers=3, seed=1)
    c.create_topic("orders")
    p = c.producer({})
    with pytest.raises(edsim.ConfigError, match="transactional.id"):
        p.begin_transaction()


def test_transactions_must_be_initialised_and_begun():
    c = edsim.Cluster(brokers=3, seed=1)
    c.create_topic("orders")
    p = c.producer({"transactional.id": "x"})
    with pytest.raises(TransactionStateError, match="init_transactions"):
        p.begin_transaction()
    with pytest.raises(TransactionStateError, match="init_transactions"):
        p.send("orders", 1)


@pytest.mark.parametrize("workload, message", [
    ({"abort_ratio": 0.5}, "only a transactional producer can abort"),
    ({"pipeline": "exactly_once_v2", "consumers": 0}, "consumers=0"),
    ({"pipeline": "exactly_once"}, "exactly_once_v2"),
])
def test_bad_transactional_workloads_are_refused(workload, message):
    with pytest.raises(edsim.ConfigError, match=message):
        edsim.Scenario(workload=workload)


def test_transaction_version_is_a_feature_level():
    with pytest.raises(edsim.ConfigError, match="transaction.version=3"):
        edsim.Scenario(broker={"transaction.version": 3})
    with pytest.raises(edsim.ConfigError, match="enable.idempotence=false"):
        edsim.Scenario(producer={"enable.idempotence": False}, workload={"transaction_size": 5})


def test_the_txn_coordinator_is_a_fault_target():
    r = edsim.simulate(workload={"messages": 500, "transaction_size": 10},
                       consumer={"isolation.level": "read_committed"},
                       faults=[faults.crash("txn-coordinator", at=0.3, restart_after=2.0)], seed=2)
    assert r.faults and r.faults[0][2][0].startswith("broker-")
    assert {k: v for k, v in r.anomalies.items() if v} == {}
    with pytest.raises(edsim.FaultError, match="txn-coordinator"):
        edsim.Scenario(faults=[faults.crash("txn-coordinator", at=1.0)])


def test_transactional_runs_are_deterministic():
    scenario = PIPELINE.replace(**{"workload.pipeline": "exactly_once_v2", "workload.transaction_size": 10,
                                   "workload.abort_ratio": 0.1})
    a, b = scenario.run().history, scenario.run().history
    assert a.drop(columns="detail").equals(b.drop(columns="detail")) and (a["detail"] == b["detail"]).all()


def test_metrics_show_the_lso_trailing_the_high_watermark_while_transactions_are_open():
    r = edsim.simulate(workload={"messages": 2000, "transaction_size": 200}, seed=5)
    assert r.metrics["lso_lag"].max() > 0
    assert (r.partition_metrics["last_stable_offset"] <= r.partition_metrics["high_watermark"]).all()
    plain = edsim.simulate(workload={"messages": 2000}, seed=5)
    assert plain.metrics["lso_lag"].max() == 0


def test_a_transaction_timeout_above_the_brokers_maximum_is_refused():
    """The coordinator refuses InitProducerId with INVALID_TRANSACTION_TIMEOUT when transaction.timeout.ms is
    above transaction.max.timeout.ms (TransactionCoordinator.handleInitProducerId), every time: a scenario says so
    before it runs (the built-in apps would retry for ever), and init_transactions() names both settings."""
    with pytest.raises(edsim.ConfigError, match=r"transaction.timeout.ms=60000 .*transaction.max.timeout.ms=30000"):
        edsim.Scenario(workload={"transaction_size": 10}, broker={"transaction.max.timeout.ms": 30000})
    with pytest.raises(edsim.ConfigError, match="INVALID_TRANSACTION_TIMEOUT"):
        edsim.Scenario(workload={"pipeline": "exactly_once_v2"}, producer={"transaction.timeout.ms": 900001})
    c = edsim.Cluster(brokers=3, seed=1, broker={"transaction.max.timeout.ms": 30000})
    p = c.producer({"transactional.id": "x"})
    failed = []

    def app(env):
        try:
            yield from p.init_transactions()
        except KafkaError as e:
            failed.append(str(e))
    c.env.process(app(c.env))
    c.run(until=2.0)
    assert failed and "INVALID_TRANSACTION_TIMEOUT" in failed[0] and "transaction.max.timeout.ms" in failed[0]


def test_init_transactions_again_while_the_sender_has_a_timer_set_starts_a_new_session():
    """Found by the fuzzer (transactional-5729): a producer that calls init_transactions() again (after being
    fenced, or between transactions) starts a new session; the sender's timer set for a lingering batch still
    fires afterwards and must find nothing to send, not crash the run (ValueError before)."""
    c = edsim.Cluster(brokers=3, seed=2)
    c.create_topic("orders", partitions=2)
    p = c.producer({"transactional.id": "shop", "linger.ms": 1000})
    done = []

    def app(env):
        yield from p.init_transactions()
        p.begin_transaction()
        p.send("orders", 1, partition=0)                  # lingers: the sender's timer is set for t + 1 s
        yield from p.commit_transaction()                 # flushes at once; the timer stays set
        yield from p.init_transactions()                  # a new session
        p.begin_transaction()
        yield p.send("orders", 2, partition=1)
        yield from p.commit_transaction()
        done.append(env.now)
    c.env.process(app(c.env))
    c.run(until=5)
    assert done                                       # the run went on (ValueError before)
    assert [log for _, log in (log_of(c, ("orders", 0)), log_of(c, ("orders", 1)))] == [
        [(0, [1]), (1, "COMMIT")], [(0, [2]), (1, "COMMIT")]]


def test_an_abort_whose_batch_comes_back_from_a_dead_leader_ends_once_the_coordinator_moves():
    """Issue "Nothing hangs" item 5b and c. A transaction's batch is in flight when its leader (also the
    transaction coordinator) dies for good; the application aborts. Java's Sender fails batches that come back
    while the transaction aborts (maybeAbortBatches: RecordAccumulator.abortUndrainedBatches) instead of holding
    them until delivery.timeout.ms (120 s before), and looks the coordinator up again when it cannot connect to it
    (awaitReady fails: lookupCoordinator) instead of retrying the dead one for ever (never ended before). The abort
    ends once the controller has fenced the dead broker (broker.session.timeout.ms, 9 s) and moved its partitions."""
    c = edsim.Cluster(brokers=3, seed=2)
    c.create_topic("orders", partitions=1)
    p = c.producer({"transactional.id": "shop"})
    out = {}

    def app(env):
        yield from p.init_transactions()
        p.begin_transaction()
        p.send("orders", 1, partition=0)
        while not p.requests:
            yield env.timeout(0.0001)                  # until the batch is in flight
        leader = c.kafka.controller.partitions[("orders", 0)].leader
        assert p.txn.coordinator == leader
        c.world.nodes[f"broker-{leader}"].crash()      # for good: its answer is a reset (retriable)
        out["crashed"] = env.now
        yield from p.abort_transaction()
        out["aborted"] = env.now
    c.env.process(app(c.env))
    c.run(until=200)
    assert "aborted" in out and out["aborted"] - out["crashed"] < 9.0 + 2.0
    assert p.txn.state == "ready"
    h = c.history.to_frame()
    sent = h[(h["f"] == "send") & (h["process"] == p.name)]
    assert sent["type"].tolist() == ["fail"]                # ended with its aborted transaction
