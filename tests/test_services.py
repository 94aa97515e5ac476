"""Services: many applications in one run, each a SimPy process that crashes by interrupt and restarts by
running again, with state stores restored from changelogs and invariants checked over the history.

Sources: Kafka Streams architecture ("State": local stores backed by compacted changelog topics, restored on
failover; standby replicas, ``num.standby.replicas``); KIP-447 (exactly-once with the group's generation);
the book, chapters 6 and 12."""
import numpy as np
import pandas as pd
import pytest

import edsim
from edsim import apps, faults, invariants
from edsim.clients import CommitFailedException, KafkaError

QUICK = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 2000}


class Inventory(edsim.Service):
    """Reserves one unit of stock per order; exactly_once puts the store's changelog, the reservation and the
    input offsets in one transaction (KIP-447); guard=False oversells (a deliberately broken variant)."""

    exactly_once = True
    guard = True
    stock = 100                # units per product at the start

    def run(self, ctx):
        stock = ctx.store("stock")
        config = dict(QUICK, **({"isolation.level": "read_committed"} if self.exactly_once else {}))
        orders = ctx.consumer(group="inventory", subscribe=["orders"],
                              config={**config, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        out = ctx.producer({"transactional.id": f"inventory-{ctx.instance}"} if self.exactly_once else None)
        while True:
            try:
                if self.exactly_once:
                    if out.txn.state in ("uninitialized", "fatal_error"):
                        yield from out.init_transactions()
                        orders.reset_to_committed("a new producer session")
                    out.begin_transaction()
                records = yield from orders.poll(0.1)
                offsets, generation = {}, orders.group_metadata()
                for topic, partition, offset, value, key, _ in records:
                    left = stock.get(key, self.stock)
                    if left > 0 or not self.guard:
                        stock.put(key, left - 1)
                        out.send("reservations", value=ctx.derive(value), key=key)
                    offsets[(topic, partition)] = offset + 1
                if self.exactly_once:
                    if offsets:
                        yield from out.send_offsets_to_transaction(offsets, generation)
                    yield from out.commit_transaction()
                else:
                    yield from out.flush()
                    if offsets:
                        yield from orders.commit_sync(offsets)
            except (KafkaError, CommitFailedException):
                if self.exactly_once:
                    try:
                        yield from out.abort_transaction()
                    except KafkaError:
                        pass
                    orders.reset_to_committed()


class Shipping(edsim.Service):
    """A view: reservations per product, answered (a ``view`` row) each time it changes."""

    def run(self, ctx):
        counts = {}
        reservations = ctx.consumer(group="shipping", subscribe=["reservations"],
                                    config={**QUICK, "auto.offset.reset": "earliest",
                                            "isolation.level": "read_committed"})
        while True:
            records = yield from reservations.poll(0.2)
            for _topic, _p, _offset, _value, key, _ in records:
                counts[key] = counts.get(key, 0) + 1
                ctx.record("view", key=key, value=counts[key])


def shop(exactly_once=True, guard=True, standby=1, extra_faults=(), seed=3, messages=900, keys=30, crash_at=1.0):
    return edsim.Scenario(
        topics={"orders": {"partitions": 3}, "reservations": {"partitions": 3}},
        consumer={"isolation.level": "read_committed"},           # how the final reader reads
        services={"shop": apps.Load(topic="orders", rate=300, keys=keys, messages=messages),
                  "inventory": edsim.service(Inventory, instances=2, num_standby_replicas=standby,
                                             exactly_once=exactly_once, guard=guard),
                  "shipping": edsim.service(Shipping)},
        invariants=[invariants.never_below("inventory", "stock", 0),
                    invariants.exactly_one_output("orders", "reservations"),
                    invariants.view_equals_fold("shipping", "reservations")],
        faults=[faults.crash("inventory-1", at=crash_at, restart_after=1.0),
                faults.pause("inventory-2", at=2.5, duration=0.5),
                faults.partition(["shipping"], ["leader:reservations-0"], at=1.5, heal_after=1.0),
                *extra_faults],
        seed=seed)


@pytest.fixture(scope="module")
def safe():
    return shop().run()


def test_three_services_under_crash_pause_and_partition_keep_their_invariants(safe):
    assert {k: v for k, v in safe.anomalies.items() if v} == {}
    assert list(safe.services.index) == ["shop", "inventory", "shipping"]
    assert safe.services.loc["inventory", "restarts"] == 1
    kinds = [repr(f).split("(")[0] for _, f, _ in safe.faults]
    assert kinds == ["faults.crash", "faults.partition", "faults.pause"]
    h = safe.history
    assert set(h.loc[h["process"] == "inventory-1", "service"]) == {"inventory"}
    assert set(h.loc[(h["process"] == "inventory-1") & (h["f"] == "poll"), "group"]) == {"inventory"}


def test_the_same_seed_gives_the_same_history(safe):
    pd.testing.assert_frame_equal(safe.history, shop().run().history)


def test_at_least_once_breaks_exactly_one_output():
    """Without the transaction a crash between writing reservations and committing the input offsets writes the
    reservations again: the declared invariant names them (and Jepsen's duplicate agrees). The window is short
    (flush() makes every batch ready at once, as Java's RecordAccumulator.beginFlush does, then one commit round
    trip): seed 5 is one whose crash lands in it."""
    r = shop(exactly_once=False, seed=5).run()
    name = "exactly-one-output:orders->reservations"
    assert r.anomalies[name] > 0
    cases = r.anomaly_cases[name]
    assert (cases["outputs"] > 1).all() and "outputs on reservations" in cases["evidence"].iloc[0]
    assert r.anomalies["duplicate"] > 0


def test_an_unguarded_store_goes_below_zero():
    r = shop(guard=False, messages=900, keys=3).run()
    name = "never-below:inventory/stock"
    assert r.anomalies[name] > 0
    assert (r.anomaly_cases[name]["value"] < 0).all()
    assert shop(guard=True, messages=900, keys=3).run().anomalies[name] == 0


def test_a_crashed_instance_restores_its_shards_from_the_changelog(safe):
    h = safe.history
    restores = h[(h["f"] == "state") & (h["type"] == "info") & (h["process"] == "inventory-1")]
    after = restores[restores["time"] > 2.0]               # restarted at 2.0
    assert len(after) and after["value"].sum() > 0          # records read back from the changelog
    assert after["detail"].str.startswith("restored stock shard").all()
    assert safe.services.loc["inventory", "records restored"] > 0


def test_standby_replicas_shorten_the_restore():
    """inventory-1 dies for good: inventory-2 takes its shards over. With a warm standby (Streams' standby task)
    it restores only the changelog's tail; without, the whole changelog of those shards."""
    def restored(standby):
        r = shop(standby=standby, seed=5).replace(faults=[faults.crash("inventory-1", at=1.5)]).run()
        h = r.history
        takeover = h[(h["f"] == "state") & (h["type"] == "info") & (h["process"] == "inventory-2")
                     & (h["time"] > 1.5)]
        assert len(takeover)                               # the shards moved
        assert {k: v for k, v in r.anomalies.items() if v} == {}
        return int(takeover["value"].sum())
    cold, warm = restored(0), restored(1)
    assert warm < cold / 5 and cold > 100


def test_a_crash_interrupts_the_process_and_a_restart_runs_it_again():
    log = []

    class Ticker(edsim.Service):
        def run(self, ctx):
            log.append(("start", ctx.now))
            while True:
                yield from ctx.sleep(0.25)
                log.append(("tick", ctx.now))

    cluster = edsim.Cluster(brokers=1, seed=1)
    cluster.service("ticker", edsim.service(Ticker))
    cluster.inject(faults.crash("ticker-1", at=0.6, restart_after=0.5), faults.pause("ticker", at=1.3, duration=1.0))
    cluster.run(until=3.0)
    times = [round(t, 2) for kind, t in log]
    assert [k for k, _ in log].count("start") == 2
    assert times[:3] == [0.0, 0.25, 0.5]                   # then the crash at 0.6: no tick at 0.75
    assert times[3] == 1.1                                  # started again at its restart
    assert 1.5 not in times and 2.3 in times                # paused 1.3-2.3: the tick due at 1.35 waits for it


def test_bad_service_input_names_the_service_and_the_option():
    with pytest.raises(ValueError, match="service 'inventory': option 'gaurd' is not allowed; did you mean 'guard'"):
        shop().replace(services={"inventory": edsim.service(Inventory, gaurd=False)})
    with pytest.raises(ValueError, match="service name 'producer' is not allowed"):
        edsim.Scenario(services={"producer": edsim.service(Shipping)}, workload={"messages": 10})
    with pytest.raises(ValueError, match="service 'shipping': num_standby_replicas=1 is not allowed"):
        edsim.Scenario(services={"shipping": edsim.service(Shipping, num_standby_replicas=1)})
    with pytest.raises(ValueError, match="invariant never-below:nobody/stock: service 'nobody' is not in the"):
        edsim.Scenario(services={"shipping": edsim.service(Shipping)},
                       invariants=[invariants.never_below("nobody", "stock", 0)])
    with pytest.raises(ValueError, match="not allowed: it is a client inside the process of 'consumer-1'"):
        edsim.Scenario(workload={"pipeline": "at_least_once"}).start().inject("crash", "consumer-1.producer")


def test_a_store_opened_twice_and_an_undeclared_topic():
    class Twice(edsim.Service):
        def run(self, ctx):
            ctx.store("s")
            ctx.store("s")
            yield from ctx.sleep(1)

    cluster = edsim.Cluster(brokers=1, seed=1)
    cluster.service("twice", edsim.service(Twice))
    with pytest.raises(ValueError, match="store 's' is opened twice"):
        cluster.run(until=1)

    class Reader(edsim.Service):
        def run(self, ctx):
            consumer = ctx.consumer(group="g", subscribe=["nowhere"])
            while True:
                yield from consumer.poll(0.1)

    r = edsim.simulate(services={"reader": edsim.service(Reader)}, faults=[faults.crash("reader", at=0.5)])
    assert "nowhere" in " ".join(r.notes)
    with pytest.raises(ValueError, match="topic 'nowhere' does not exist and auto.create.topics.enable is false"):
        edsim.simulate(services={"reader": edsim.service(Reader)}, broker={"auto.create.topics.enable": False})


def test_cluster_result_heals_catches_up_and_checks():
    cluster = edsim.Cluster(brokers=3, seed=2)
    cluster.create_topic("orders", partitions=2)
    cluster.service("shop", apps.Load(topic="orders", rate=200, keys=5, messages=200))
    cluster.inject(faults.isolate("leader:orders-0", at=0.2, heal_after=60))
    cluster.run(until=2.0)
    result = cluster.result()
    assert result.counts()["read by the final catch-up"] == result.counts()["acknowledged"] > 0
    assert set(result.anomalies) >= {"lost-write", "unseen"}
    assert any("isolate" in repr(f) for _, f, _ in result.faults)


def test_values_are_derived_with_lineage_and_the_same_input_gives_the_same_output(safe):
    values, parents = safe._history.lineage()
    assert len(values) and len(set(values.tolist())) == len(values)
    sent = safe.history
    inputs = set(sent.loc[(sent["f"] == "send") & (sent["topic"] == "orders"), "value"])
    assert set(parents.tolist()) <= inputs


def test_the_panel_offers_the_scenarios_services_as_fault_targets():
    from edsim.widgets import ExperimentPanel
    panel = ExperimentPanel(shop())
    options = list(panel.fault_target.options)
    assert ["shop-1", "inventory-1", "inventory-2", "shipping-1", "inventory"] == [
        o for o in options if isinstance(o, str) and o not in ("leader", "followers", "controller")]
    three = ExperimentPanel(edsim.Scenario(workload={"consumers": 3}))
    assert "consumer-3" in three.fault_target.options and "consumer-4" not in three.fault_target.options


def test_processing_is_judged_per_consumer_group():
    """Two services reading one topic each process every record once: no duplicate-processing; a group that
    records no processing is not judged for lost-processing by another group's rows."""
    class Silent(edsim.Service):
        def run(self, ctx):
            consumer = ctx.consumer(group="silent", subscribe=["orders"], config={"auto.offset.reset": "earliest"})
            while True:
                yield from consumer.poll(0.1)
                yield from consumer.commit_sync()

    r = edsim.simulate(topics={"orders": {"partitions": 2}},
                       services={"shop": apps.Load(topic="orders", rate=400, keys=10, messages=400),
                                 "billing": apps.Consume(topic="orders", group="billing", commit="after-process"),
                                 "email": apps.Consume(topic="orders", group="email", commit="after-process"),
                                 "audit": edsim.service(Silent)},
                       seed=4)
    h = r.history
    processed = h[h["f"] == "process"]
    assert processed.groupby("group", observed=True)["value"].nunique().to_dict() == {"billing": 400, "email": 400}
    assert r.anomalies["duplicate-processing"] == 0 and r.anomalies["lost-processing"] == 0
    # the checker, fed the same rows as one group, would call each value processed twice
    from edsim import checker
    one_group = h.assign(group="")
    assert checker.check(one_group).anomalies["duplicate-processing"] == 400


class Tally(edsim.Service):
    """Counts records per key, from every topic it reads, in a store."""

    def run(self, ctx):
        counts = ctx.store("counts")
        inputs = ctx.consumer(group="tally", subscribe=["orders", "customers"],
                              config={**QUICK, "auto.offset.reset": "earliest"})
        while True:
            for r in (yield from inputs.poll(0.1)):
                counts.put(r.key, counts.get(r.key, 0) + 1)
            yield from inputs.commit_sync()


def test_a_restore_pauses_the_whole_task_and_a_crash_after_the_load_still_fails_over():
    """While shard p restores, no input partition numbered p is processed (Streams pauses the task), so a store
    fed by two topics restores nothing at start-up; and a crash for good that strikes after the load has ended
    still moves the dead instance's partitions before the run ends (the last fault strikes before the drain)."""
    r = edsim.simulate(topics={"orders": {"partitions": 3}, "customers": {"partitions": 3}},
                       services={"shop": apps.Load(topic="orders", rate=1000, keys=20, messages=1000),
                                 "people": apps.Load(topic="customers", rate=1000, keys=20, messages=50),
                                 "tally": edsim.service(Tally, instances=2)},
                       faults=[faults.crash("tally-1", at=3.0)], seed=1)
    h = r.history
    startup = h[(h["f"] == "state") & (h["type"] == "info") & (h["time"] < 1.0)]
    assert len(startup) and startup["value"].sum() == 0
    moved = h[(h["f"] == "assign") & (h["process"] == "tally-2") & (h["time"] > 3.0)]
    assert len(moved) and r.services.loc["tally", "lag"] == 0
