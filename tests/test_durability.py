"""The Durability rows of shared/FIDELITY.md: each unsafe setting shows its loss for a fixed seed, and the
setting that prevents it shows none over 50 seeds.

Sources: Kafka's design documentation, section "Replication" (acks, ISR, high watermark, unclean leader
election, min.insync.replicas); ProducerConfig docs for `acks`; KIP-101 and KIP-279 (leader epochs);
KAFKA-15583 / apache/kafka PR #14594 (high watermark held while the ISR is under min.insync.replicas);
Kyle Kingsbury, "Jepsen: Kafka" (2013).
"""
import numpy as np
import pytest

import edsim
from edsim import faults

from conftest import polled, sends, sweep_anomalies

LOSS = ("lost-write", "unseen", "inconsistent-offsets", "duplicate")

# Followers fall behind first (they cannot fetch), then the leader dies: "the leader acks, then crashes before
# the followers fetch" (FIDELITY, acks=1 row).
BEHIND_THEN_CRASH = [faults.partition(["leader"], ["followers"], at=0.5, heal_after=5),
                     faults.crash("leader", at=1.0, restart_after=2.0)]


def test_acks_0_counts_records_sent_without_offsets_and_loses_them():
    """acks=0: the producer counts a record sent when it leaves, with no offset (-1); records the leader held
    alone are gone after it crashes, and nobody was ever told (ProducerConfig `acks`)."""
    result = edsim.simulate(producer={"acks": "0"}, faults=BEHIND_THEN_CRASH, seed=1)
    ok = sends(result, "ok")
    assert len(ok) == 3000 and (ok["offset"] == -1).all()
    assert result.anomalies["unseen"] > 100
    assert result.anomalies["lost-write"] == 0          # without offsets a loss cannot be proven, only unseen
    missing = set(ok["value"]) - polled(result, "catch-up")
    assert len(missing) == result.anomalies["unseen"]


def test_acks_1_loses_acknowledged_writes_the_old_leader_truncates():
    """acks=1 acknowledges once the leader has the write. A leader that dies before its followers fetch loses
    acknowledged records; on its return it truncates them (its log diverged from the new leader's, KIP-101);
    no consumer had read them, because reads stop at the high watermark."""
    result = edsim.simulate(producer={"acks": "1"}, faults=BEHIND_THEN_CRASH, seed=1)
    assert result.anomalies["lost-write"] > 100
    lost = set(result.anomaly_cases["lost-write"]["value"])
    acked = set(sends(result, "ok")["value"])
    assert lost <= acked
    assert not lost & polled(result)                     # never read, by anyone
    old_leader = result.truth.log(0, broker=1)
    assert not lost & set(old_leader["value"])           # truncated on the old leader too
    assert result.truth.replicas().query("broker == 1")["up"].item()
    assert result.truth.leaders()["leader"].iloc[-1] != 1


def test_acks_1_with_a_healthy_follower_loses_only_in_a_race():
    """With followers parked in long-poll fetches, the leader ships each batch to them the moment it acks it, so
    a leader crash rarely loses acks=1 writes; the loss needs followers behind (the test above)."""
    frame = edsim.sweep(edsim.Scenario(producer={"acks": "1"},
                                       faults=[faults.crash("leader", at=1.0, restart_after=2.0)]), seeds=range(10))
    assert (frame["lost-write"] == 0).all()


def test_acks_all_keeps_acknowledged_writes_when_the_leader_dies(pool):
    """The same faults with acks=all: a write is acknowledged only once every ISR member has it."""
    scenario = edsim.Scenario(producer={"acks": "all"}, faults=BEHIND_THEN_CRASH)
    assert sweep_anomalies(scenario, pool, LOSS) == {}
    result = scenario.run(seed=1)
    assert result.anomalies["lost-write"] == 0
    assert len(sends(result, "ok")) == 3000                # nothing lost, nothing given up: the writes waited


ISR_OF_ONE = dict(
    topic={"min.insync.replicas": 1},
    broker={"replica.lag.time.max.ms": 10000},
    workload={"messages": 5000, "rate": 200},
    # followers cannot fetch: after replica.lag.time.max.ms the ISR is the leader alone; then it dies for good
    faults=[faults.partition(["leader"], ["followers"], at=1.0, heal_after=40), faults.crash("leader", at=20.0)],
)


def test_acks_all_with_an_isr_of_one_and_unclean_election_loses_writes():
    """acks=all means "all of the ISR". Once the ISR has shrunk to the leader, acks=all writes have one copy;
    when that leader dies and a stale replica is elected, they are gone and their offsets are reused."""
    result = edsim.Scenario(**ISR_OF_ONE).replace(**{"topic.unclean.leader.election.enable": True}).run(seed=1)
    leaders = result.truth.leaders()
    assert (leaders["isr"].apply(len) == 1).any()                   # the ISR shrank to the leader
    assert leaders["leader"].iloc[-1] != leaders["leader"].iloc[0]  # a stale replica took over
    acked = set(sends(result, "ok")["value"])
    survived = polled(result, "catch-up")
    assert len(acked - survived) > 1000
    assert result.anomalies["inconsistent-offsets"] > 0


def test_acks_all_with_an_isr_of_one_and_clean_election_stays_offline(pool):
    """With unclean election off the only in-sync copy is the dead leader: the partition stays offline, and
    nothing acknowledged is lost (over 50 seeds)."""
    scenario = edsim.Scenario(**ISR_OF_ONE)
    result = scenario.run(seed=1)
    assert result.truth.offline() == [("events", 0)]
    assert result.truth.leaders()["leader"].iloc[-1] == -1
    assert any("offline" in note for note in result.notes)
    assert sweep_anomalies(scenario, pool, ("lost-write", "inconsistent-offsets", "duplicate")) == {}


MIN_ISR = dict(topic={"min.insync.replicas": 2}, workload={"messages": 5000, "rate": 1000},
               faults=[faults.crash("followers", at=1.0)])


def test_min_insync_replicas_refuses_acks_all_until_delivery_timeout():
    """RF=3, min.insync.replicas=2, two brokers down: acks=all writes get NOT_ENOUGH_REPLICAS, are retried, and
    fail when delivery.timeout.ms runs out; the high watermark stays where it was (KAFKA-15583)."""
    result = edsim.simulate(**MIN_ISR, producer={"acks": "all", "delivery.timeout.ms": 40000}, seed=1)
    assert result.producer_errors.get("NOT_ENOUGH_REPLICAS", 0) > 10
    final = sends(result).drop_duplicates("value", keep="last")
    failed = final[final["type"] != "ok"]
    assert len(failed) > 3000
    assert set(failed["error"].astype(str)) == {"DELIVERY_TIMEOUT"}
    waited = failed["time"] - failed["invoke_time"]
    # retried for the whole delivery.timeout.ms, counted from the batch's creation: the record that created a
    # batch waited the full 40 s (it was handed over at most one 1 ms workload step before), records that joined
    # the batch later waited less (a batch keeps taking records until the sender drains it), none waited longer
    first = waited.groupby(failed["op"]).max()
    assert first.min() >= 40.0 - 1e-6 and first.max() <= 40.0 + 0.001 + 1e-6
    assert waited.max() <= 40.0 + 0.001 + 1e-6
    leader = result.truth.replicas().query("role == 'leader'")
    assert leader["high_watermark"].item() < 1100                   # frozen near where the followers died
    assert result.anomalies["lost-write"] == 0


def test_min_insync_replicas_does_not_stop_acks_1():
    """acks=1 writes still succeed with one replica; but the high watermark is frozen, so nobody can read them."""
    result = edsim.simulate(**MIN_ISR, producer={"acks": "1"}, seed=1)
    assert (sends(result).drop_duplicates("value", keep="last")["type"] == "ok").all()
    leader = result.truth.replicas().query("role == 'leader'")
    assert leader["log_end"].item() == 5000
    assert leader["high_watermark"].item() < 1100
    assert result.anomalies["unseen"] > 3000


UNCLEAN = dict(
    workload={"messages": 9000, "rate": 200},
    # followers die; after broker.session.timeout.ms the ISR is the leader alone; it keeps taking writes, then
    # dies; the stale followers return first.
    faults=[faults.crash(2, at=1.0, restart_after=19), faults.crash(3, at=1.0, restart_after=19),
            faults.crash(1, at=15.0, restart_after=25)],
)


def test_unclean_election_loses_committed_consumed_records():
    """unclean.leader.election.enable=true elects a stale replica: records that were committed and consumed
    vanish and their offsets are reused for other records (Kafka docs, "Unclean leader election")."""
    result = edsim.simulate(**UNCLEAN, topic={"unclean.leader.election.enable": True}, seed=1)
    consumed = polled(result, "consumer-1")
    survived = polled(result, "catch-up")
    assert len(consumed - survived) > 500
    assert result.anomalies["inconsistent-offsets"] > 500
    case = result.anomaly_cases["inconsistent-offsets"].iloc[0]
    assert "holds 2 different values" in case["evidence"]


def test_clean_election_waits_and_loses_nothing(pool):
    """With unclean election off the partition is unavailable until the last in-sync replica returns, and
    nothing is lost (over 50 seeds)."""
    scenario = edsim.Scenario(**UNCLEAN)
    result = scenario.run(seed=1)
    leaders = result.truth.leaders()
    assert (leaders["leader"] == -1).any()                          # offline while broker 1 was away
    assert leaders["leader"].iloc[-1] == 1                          # ... until it came back
    assert sweep_anomalies(scenario, pool, LOSS) == {}


EPOCHS = dict(
    workload={"messages": 6000, "rate": 200},
    # the leader dies for good; the new leader's follower (broker 3) cannot fetch from it; the new leader dies
    # too, and broker 3, still in the ISR, is elected.
    faults=[faults.crash(1, at=1.0), faults.partition([3], [2], at=9.0, heal_after=60), faults.crash(2, at=12.0)],
)


def test_high_watermark_truncation_loses_committed_records():
    """Before KIP-101 a replica that became a follower truncated its log to its own high watermark, which lags
    the leader's. Elected later, it lacks committed records: they are lost and their offsets reused."""
    result = edsim.simulate(**EPOCHS, broker={"edsim.legacy.truncation": "high-watermark"}, seed=1)
    assert result.anomalies["inconsistent-offsets"] > 0
    acked = set(sends(result, "ok")["value"])
    assert acked - polled(result, "catch-up")


def test_leader_epoch_truncation_keeps_replicas_consistent(pool):
    """KIP-101/KIP-279: a follower asks the leader where its epoch ends and truncates only what diverged; the
    same schedule loses nothing (over 50 seeds), and the replicas' logs agree."""
    scenario = edsim.Scenario(**EPOCHS)
    assert sweep_anomalies(scenario, pool, LOSS) == {}
    result = scenario.run(seed=1)
    log = result.truth.log(0, broker=3)
    assert len(log) == 6000 and log["offset"].is_monotonic_increasing


JEPSEN = dict(
    broker={"replica.lag.time.max.ms": 10000},
    workload={"messages": 8000, "rate": 200},
    # Jepsen 2013: cut the leader off from its followers (the ISR shrinks to the leader), then isolate the
    # leader completely (a new leader is elected), then heal.
    faults=[faults.partition(["leader"], ["followers"], at=1.0, heal_after=40),
            faults.isolate("leader", at=20.0, heal_after=15)],
)


def test_jepsen_2013_loses_acknowledged_writes_with_min_isr_1_and_unclean_election():
    result = edsim.simulate(**JEPSEN, topic={"unclean.leader.election.enable": True}, seed=1)
    acked = set(sends(result, "ok")["value"])
    assert len(acked - polled(result, "catch-up")) > 100
    assert result.anomalies["inconsistent-offsets"] > 0


def test_jepsen_2013_with_min_isr_2_and_clean_election_is_unavailable_not_lossy(pool):
    """The fix Jepsen proposed: min.insync.replicas=2 refuses writes once the ISR is the leader alone, and clean
    election waits for it. The price is availability: writes are refused while it lasts."""
    scenario = edsim.Scenario(**JEPSEN, topic={"min.insync.replicas": 2})
    result = scenario.run(seed=1)
    # the writes already waiting for the lost followers time out; new ones would get NOT_ENOUGH_REPLICAS
    assert result.producer_errors.get("REQUEST_TIMED_OUT", 0) + result.producer_errors.get("NOT_ENOUGH_REPLICAS", 0)
    latency = sends(result, "ok").eval("time - invoke_time")
    assert latency.max() > 10                                       # writes waited out the outage
    assert sweep_anomalies(scenario, pool, LOSS) == {}


def test_jepsen_2013_loss_needs_unclean_election_even_with_min_isr_1(pool):
    """Today's default that prevents the 2013 loss is unclean.leader.election.enable=false: with
    min.insync.replicas still at its default of 1 nothing is lost, but the partition is offline while the
    leader is isolated."""
    scenario = edsim.Scenario(**JEPSEN)
    result = scenario.run(seed=1)
    assert (result.truth.leaders()["leader"] == -1).any()
    assert sweep_anomalies(scenario, pool, LOSS) == {}


def test_high_watermark_is_the_minimum_log_end_of_the_isr():
    """The high watermark never passes a record some ISR member lacks (design docs, "Replication")."""
    result = edsim.simulate(seed=3)
    replicas = result.truth.replicas()
    leader = replicas.query("role == 'leader'")
    isr = replicas[replicas["in_isr"]]
    assert leader["high_watermark"].item() <= isr["log_end"].min()
    assert np.array_equal(result.truth.log(0, broker=1)["value"], result.truth.log(0, broker=2)["value"])


# ---- KIP-966: eligible leader replicas ---------------------------------------------------------------------------
# Sources: KIP-966 (Eligible Leader Replicas); Kafka's operations docs, "Eligible Leader Replicas" (on by default for
# new clusters since 4.1: eligible.leader.replicas.version=1); Java's PartitionChangeBuilder (election order: ISR,
# then an unfenced ELR member, then the last known leader); KAFKA-15586 (an unclean shutdown leaves the ELR).


def test_elr_elects_a_follower_that_left_the_isr_below_min_isr(pool):
    """Jepsen's 2013 schedule with min.insync.replicas=2: the followers left the ISR while it was below its
    minimum, so the high watermark could not move and they hold every committed record. When the isolated leader
    is fenced the controller elects one of them from the ELR at once; before ELR the partition was offline until
    the old leader came back. Nothing is lost either way."""
    scenario = edsim.Scenario(**{**JEPSEN, "broker": {**JEPSEN["broker"], "edsim.debug.invariants": True}},
                              topic={"min.insync.replicas": 2})
    with_elr = scenario.run(seed=1)
    leaders = with_elr.truth.leaders()
    shrunk = leaders[leaders["isr"] == (1,)].iloc[0]
    assert shrunk["elr"] == (2, 3)                                   # out of the ISR below min ISR: eligible
    elected = leaders[leaders["leader"] != 1].iloc[0]
    assert elected["leader"] in (2, 3) and elected["isr"] == (elected["leader"],)
    assert not (leaders["leader"] == -1).any()                       # never offline
    assert (leaders.iloc[-1]["elr"] == ())                           # the ISR grew back: the ELR is cleared
    assert sweep_anomalies(scenario, pool, LOSS) == {}

    before = scenario.replace(**{"broker.eligible.leader.replicas.version": 0}).run(seed=1)
    old = before.truth.leaders()
    assert (old["leader"] == -1).any() and (old["elr"] == ()).all()
    assert set(old["leader"]) == {1, -1}                             # it waited for broker 1 to return


def test_a_broker_back_from_an_unclean_shutdown_leaves_the_elr():
    """KAFKA-15586: broker 2, in the ELR, crashes and restarts; it may have lost unflushed records, so it leaves the
    ELR and broker 3, which stayed up, is the one elected when the leader dies."""
    schedule = [faults.partition([1], [2, 3], at=1.0),                       # the followers leave the ISR
                faults.crash(2, at=15.0, restart_after=1.0),
                faults.crash(1, at=20.0)]
    result = edsim.simulate(topic={"min.insync.replicas": 2}, broker={"replica.lag.time.max.ms": 5000},
                            workload={"messages": 2000, "rate": 200}, faults=schedule, seed=1)
    leaders = result.truth.leaders()
    assert ((leaders["time"] < 15) & (leaders["elr"] == (2, 3))).any()
    after_restart = leaders[(leaders["time"] > 16.0)]
    assert not any(2 in elr for elr in after_restart["elr"])
    takeover = leaders[(leaders["time"] > 20.0) & (leaders["leader"] >= 0)].iloc[0]
    assert takeover["leader"] == 3


def test_the_last_known_leader_leads_again_when_it_returns():
    """The ISR's only member crashes: the ISR empties (allowed with ELR), the partition goes offline, and when the
    broker comes back it is elected as the last known leader, as before ELR (docs: "Select the last known leader if
    it is unfenced")."""
    schedule = [faults.crash("followers", at=0.5), faults.crash("leader", at=12.0, restart_after=10.0)]
    result = edsim.simulate(workload={"messages": 3000, "rate": 200}, faults=schedule, seed=1)
    leaders = result.truth.leaders()
    empty = leaders[leaders["isr"] == ()]
    assert len(empty) and (empty["leader"] == -1).all()
    assert empty.iloc[0]["elr"] == (1,)                              # the ISR emptied below its minimum
    back = leaders.iloc[-1]
    assert back["time"] > 22.0 and back["leader"] == 1 and back["isr"] == (1,) and back["elr"] == ()


# ---- power loss ----------------------------------------------------------------------------------------------------
# Sources: Kafka's docs, "Log Flush Policy" and the topic configs flush.messages / flush.ms (Kafka leaves fsync to
# the OS by default and relies on replication); Linux's vm.dirty_expire_centisecs (3000: 30 s); KIP-101, "Scenario
# 2: Replica Divergence on Restart after Multiple Hard Failures".
ALL_LOSE_POWER = [faults.crash(b, at=5.0, restart_after=2.0, power_loss=True) for b in (1, 2, 3)]
STEADY = {"messages": 3000, "rate": 500, "consumers": 0}


def test_a_power_loss_of_every_replica_loses_acknowledged_writes_unless_flushed():
    """acks=all only means "in three page caches": when all three machines lose power, what the OS had not yet
    written back (appended in the last 30 s) is gone, acknowledged or not. An fsync per record (flush.messages=1)
    keeps all of it; flush.ms with the log flusher keeps all but the last interval."""
    def gone(result):                 # acknowledged, then absent: read later in the wrong place, or never
        return result.anomalies["lost-write"] + result.anomalies["unseen"]

    lost = edsim.simulate(workload=STEADY, faults=ALL_LOSE_POWER, seed=1)
    assert gone(lost) > 2000                                         # about all 5 s of writes
    h = lost.history
    assert h["detail"].str.contains("power loss: .* records not yet on disk are gone").sum() == 3
    flushed = edsim.simulate(workload=STEADY, topic={"flush.messages": 1}, faults=ALL_LOSE_POWER, seed=1)
    assert gone(flushed) == 0
    periodic = edsim.simulate(workload=STEADY, topic={"flush.ms": 1000},
                              broker={"log.flush.scheduler.interval.ms": 500}, faults=ALL_LOSE_POWER, seed=1)
    assert 0 < gone(periodic) <= 1.5 * 500                           # at most the last flush interval (+ a check)


def test_a_crash_resets_connections_a_power_loss_leaves_peers_to_their_timeouts():
    """A crashed process's machine answers with TCP resets, so the producer learns at once and moves on. A machine
    without power answers nothing: the producer's requests wait, retransmitted by TCP, until either the machine is
    back (its kernel resets the old connection at the next retransmission: NETWORK_EXCEPTION for every request in
    flight on it) or request.timeout.ms (30 s) passes (REQUEST_TIMED_OUT, and NetworkClient closes the connection,
    failing the rest with NETWORK_EXCEPTION)."""
    def run(power_loss, restart_after=5.0):
        return edsim.simulate(workload=STEADY, faults=[faults.crash("leader", at=2.0, restart_after=restart_after,
                                                                    power_loss=power_loss)], seed=1)
    crash, back, gone = run(False), run(True), run(True, restart_after=60.0)
    assert "REQUEST_TIMED_OUT" not in crash.producer_errors
    assert sends(crash, "ok").eval("time - invoke_time").max() < 10
    # back after 5 s: heard of at the first retransmission after the restart (sent at 2 s: 2.2, 2.6, 3.4, 5.0, 8.2)
    assert "REQUEST_TIMED_OUT" not in back.producer_errors and back.producer_errors["NETWORK_EXCEPTION"] >= 1
    assert 6.0 < sends(back, "ok").eval("time - invoke_time").max() < 7.0
    # off for a minute: the request timeout comes first
    assert gone.producer_errors.get("REQUEST_TIMED_OUT", 0) >= 1
    assert sends(gone, "ok").eval("time - invoke_time").max() > 30
    for result in (crash, back, gone):
        assert result.anomalies["lost-write"] == 0                   # the followers held everything acknowledged


def test_kip101_replicas_diverge_after_both_lose_power_without_leader_epochs():
    """KIP-101's second scenario: broker 2 loses power and comes back with less than broker 1; broker 1 loses power
    too; broker 2 is elected and takes new writes at offsets broker 1 still holds with old records. Truncating to
    the high watermark, broker 1 keeps them: two replicas, one offset, two values. Truncating by leader epoch, it
    cuts back to where epoch 0 ends on the new leader and the logs agree."""
    schedule = [faults.crash(2, at=40.0, restart_after=11.0, power_loss=True),
                faults.crash(1, at=50.0, restart_after=60.0, power_loss=True)]

    def replicas_disagree(truncation):
        result = edsim.simulate(brokers=2, topic={"replication.factor": 2, "unclean.leader.election.enable": True},
                                broker={"eligible.leader.replicas.version": 0, "edsim.legacy.truncation": truncation,
                                        "replica.lag.time.max.ms": 5000},
                                producer={"enable.idempotence": False},
                                workload={"messages": 14000, "rate": 200, "consumers": 0}, faults=schedule, seed=1)
        both = result.truth.log(0, broker=1).merge(result.truth.log(0, broker=2), on="offset")
        return int((both["value_x"] != both["value_y"]).sum())

    assert replicas_disagree("high-watermark") > 1000
    assert replicas_disagree("leader-epoch") == 0


# KIP-320: the group committed ~2,700 records of epoch 0; the leader dies, the stale follower is elected uncleanly
# (epoch 1 starts at 190) and the log ends at 390. consumer-1 was down during the election and starts again from
# the committed offset, which lies past the end of the new log.
COMMITTED_PAST_THE_END = dict(
    topic={"replication.factor": 2, "unclean.leader.election.enable": True},
    workload={"messages": 3000, "rate": 200, "commit": "after-process"},
    faults=[faults.crash(2, at=1.0, restart_after=19), faults.crash(1, at=14.0),
            faults.crash("consumer-1", at=13.5, restart_after=14)])


def _after_restart(result):
    h = result.history
    return h[(h["f"] == "poll") & (h["process"] == "consumer-1") & (h["time"] > 27.5)]


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_committed_offset_past_a_truncated_log_resumes_at_the_divergence_point(reset):
    """KIP-320: OffsetCommit stores the leader epoch of the last consumed record; a member that starts from the
    committed offset validates it against the leader (OffsetsForLeaderEpoch) and, when the log was truncated
    below it, resumes where the logs diverge (the end of that epoch on the new leader) whatever
    auto.offset.reset says (SubscriptionState.maybeCompleteValidation; ConsumerUtils.refreshCommittedOffsets
    seeks unvalidated with the committed epoch). Without it the consumer re-reads from 0 (earliest) or skips
    the new records (latest)."""
    result = edsim.simulate(**COMMITTED_PAST_THE_END, consumer={"auto.offset.reset": reset}, seed=1)
    h = result.history
    committed = h[(h["f"] == "commit") & (h["process"] == "consumer-1") & (h["type"] == "ok")]["offset"].max()
    log = result.truth.log(0)
    divergence = int(log[log["leader_epoch"] > 0]["offset"].min())
    assert committed > len(log) > divergence > 0                 # the committed offset lies past the log end
    polls = _after_restart(result)
    assert int(polls["offset"].min()) == divergence
    assert set(polls["offset"]) == set(range(divergence, len(log)))


class _StrictReader(edsim.Service):
    """A group member with auto.offset.reset=none that starts a new group from the beginning itself (as an
    application calls seekToBeginning) and commits after each poll; it records what poll() raises."""

    def run(self, ctx):
        from edsim.clients.consumer import LogTruncation, OffsetOutOfRange
        consumer = ctx.consumer(group="strict", subscribe=["events"],
                                config={"auto.offset.reset": "none", "enable.auto.commit": False})
        while True:
            try:
                records = yield from consumer.poll(0.5)
            except LogTruncation:
                continue
            except OffsetOutOfRange:
                for tp in consumer.assignment:
                    if consumer.position(tp) is None:
                        consumer.seek(tp, 0)
                continue
            if len(records):
                yield from consumer.commit_sync()


def test_committed_offset_past_a_truncated_log_with_reset_none_is_an_error():
    """auto.offset.reset=none: the truncation is not resolved for the application; poll() raises
    (Java's LogTruncationException, an OffsetOutOfRangeException) and the history records it."""
    scenario = edsim.Scenario(**COMMITTED_PAST_THE_END).replace(
        workload={"messages": 3000, "rate": 200, "consumers": 0},
        services={"strict": edsim.service(_StrictReader)},
        faults=COMMITTED_PAST_THE_END["faults"][:2] + [faults.crash("strict-1", at=13.5, restart_after=14)])
    result = scenario.run(seed=1)
    h = result.history
    errors = h[(h["process"] == "strict-1") & (h["error"] == "LOG_TRUNCATION")]
    assert len(errors) >= 1 and (errors["type"] == "fail").all()
    assert len(errors) < 50                                     # not one per fetch round trip
    polls = h[(h["f"] == "poll") & (h["process"] == "strict-1")]
    assert len(polls[polls["time"] < 13.5]) > 2000 and not len(polls[polls["time"] > 27.5])
