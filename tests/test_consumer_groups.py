"""Consumer groups: the rows of shared/FIDELITY.md on failover and rebalancing, and the duplicates rows.

Sources: Kafka consumer docs (`session.timeout.ms`, `heartbeat.interval.ms`, `max.poll.interval.ms`,
`enable.auto.commit`); KIP-62 (max.poll.interval.ms and the background heartbeat); KIP-345 (static membership);
KIP-429 (incremental cooperative rebalancing); the book, chapter 12, "The duplicates problem".
"""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import edsim
from edsim import faults
from edsim.clients import CommitFailedException


def assigns(result, process):
    h = result.history
    return h[(h["f"] == "assign") & (h["process"] == process) & (h["type"] == "ok")]


def partitions_at(result, process, t):
    """The partitions ``process`` was assigned by time ``t`` (its last assignment before t)."""
    rows = assigns(result, process)
    rows = rows[rows["time"] <= t]
    last = rows[rows["time"] == rows["time"].max()]
    return set(last["partition"]) - {-1}


def test_a_dead_members_partitions_go_unread_until_the_session_times_out():
    """A crashed member sends no LeaveGroup: the coordinator waits session.timeout.ms (45 s) for its heartbeats,
    then rebalances, and the others take its partitions from the committed offsets."""
    result = edsim.simulate(topic={"partitions": 6}, workload={"consumers": 3, "messages": 12000, "rate": 200},
                            faults=[faults.crash("consumer-2", at=8.0)], seed=1)
    orphans = partitions_at(result, "consumer-2", 8.0)
    assert len(orphans) == 2
    h = result.history
    reads = h[(h["f"] == "poll") & h["partition"].isin(orphans) & (h["process"] != "catch-up")]
    after = reads[reads["time"] > 8.0]
    # unread for session.timeout.ms after its last heartbeat (sent at most heartbeat.interval.ms before the
    # crash); then the others hear of the rebalance at their next heartbeat and take over
    assert 8.0 - 3.0 + 45.0 <= after["time"].min() <= 8.0 + 45.0 + 3.0 + 1.0
    assert set(after["process"]) <= {"consumer-1", "consumer-3"}
    pm = result.partition_metrics
    window = pm[pm["partition"].isin(orphans) & pm["time"].between(8.5, 49.5)]
    assert (window["owner"] == "").all()
    assert window.groupby("partition")["consumer_lag"].apply(lambda lag: lag.is_monotonic_increasing).all()
    during = result.metrics[result.metrics["time"].between(8.5, 49.5)]
    assert (during["unowned_partitions"] == 2).all()
    assert result.anomalies["lost-processing"] == 0


class Member(edsim.Service):
    """Polls group "g" on "events" forever."""
    config = {}

    def run(self, ctx):
        consumer = ctx.consumer(group="g", subscribe=["events"], config=self.config)
        while True:
            yield from consumer.poll(0.2)


def _group(strategy=("range",), members=2, partitions=4, seed=1, static=False, **config):
    cluster = edsim.Cluster(brokers=3, seed=seed, broker={"group.initial.rebalance.delay.ms": 0})
    cluster.create_topic("events", partitions=partitions)
    cluster.kafka.ensure_offsets_topic()
    consumers = []

    def join(i):
        """A member as a service instance: a crash interrupts its poll loop, a restart subscribes again."""
        instance = {"group.instance.id": f"instance-{i}"} if static else {}
        config_i = {"partition.assignment.strategy": list(strategy), **instance, **config}
        member = cluster.service(f"consumer-{i}", edsim.ServiceSpec(
            Member, options={"config": config_i}, instance_names=[f"consumer-{i}"]))
        cluster.env.run(until=cluster.now + 1e-9)                     # its process opens its consumer
        consumer = member.instances[0].clients[0]
        consumers.append(consumer)
        return consumer

    for i in range(1, members + 1):
        join(i)
    return cluster, consumers, join


@pytest.mark.parametrize("max_age", [2.0, None])
def test_a_group_takes_up_added_partitions_when_its_leaders_metadata_shows_them(max_age):
    """The group's leader rebalances once its metadata shows the topic with more partitions than it assigned
    (Java's ConsumerCoordinator), so an added partition has no owner until the leader's next metadata refresh:
    at the latest metadata.max.age.ms (5 minutes by default) after its last one."""
    config = {} if max_age is None else {"metadata.max.age.ms": max_age * 1000}
    cluster, consumers, _join = _group(**config)
    cluster.run(until=5)
    assert sorted(tp for c in consumers for tp in c.assignment) == [("events", p) for p in range(4)]
    cluster.add_partitions("events", 5)
    cluster.run(until=5 + 0.5)
    assert not any(("events", 4) in c.assignment for c in consumers)   # the leader does not know yet
    if max_age is None:
        cluster.run(until=60)
        assert not any(("events", 4) in c.assignment for c in consumers)
        return
    # the leader's refresh, its rejoin at the next poll, the other member's at its next heartbeat (3 s)
    cluster.run(until=5 + max_age + 3.0 + 1.5)
    assert sorted(tp for c in consumers for tp in c.assignment) == [("events", p) for p in range(5)]


def test_a_clean_leave_rebalances_at_once():
    cluster, (c1, c2), _join = _group()
    cluster.run(until=5)
    assert len(c1.assignment) == 2 and len(c2.assignment) == 2
    c2.close()                                                        # LeaveGroup
    cluster.run(until=5 + 3.0 + 0.5)                                  # one heartbeat.interval.ms later
    assert len(c1.assignment) == 4


def test_a_crash_without_leave_waits_for_the_session_timeout():
    cluster, (c1, c2), _join = _group()
    cluster.run(until=5)
    c2.crash()
    cluster.run(until=45)
    assert len(c1.assignment) == 2                                    # still waiting for consumer-2
    cluster.run(until=5 + 45 + 3.5)
    assert len(c1.assignment) == 4


@pytest.mark.parametrize("strategy", [("range",), ("cooperative-sticky",)])
def test_eager_revokes_everything_cooperative_only_what_moves(strategy):
    """A member joins. Eager (range): every member gives up every partition before the new assignment.
    Cooperative (KIP-429): members keep what stays theirs and revoke only what moves."""
    cluster, (c1, c2), join = _group(strategy)
    cluster.run(until=5)
    before = {c.name: set(c.assignment) for c in (c1, c2)}
    c3 = join(3)
    cluster.run(until=15)
    assert c3.assignment and sorted(c1.assignment + c2.assignment + c3.assignment) == [("events", p) for p in range(4)]
    h = cluster.history.to_frame()
    window = h[(h["f"] == "assign") & (h["time"] > 5) & h["process"].isin(["consumer-1", "consumer-2"])]
    emptied = set(window.loc[window["detail"] == "no partitions", "process"])
    if strategy == ("range",):
        assert emptied == {"consumer-1", "consumer-2"}
    else:
        assert emptied == set()
        for c in (c1, c2):                                            # kept partitions were never revoked
            kept = before[c.name] & set(c.assignment)
            for t, rows in window[window["process"] == c.name].groupby("time"):
                assert kept <= set(zip(rows["topic"], rows["partition"]))


def test_static_membership_comes_back_without_a_rebalance():
    """KIP-345: a member with group.instance.id that restarts within session.timeout.ms gets its partitions back
    and nobody else's assignment changes; a dynamic member's restart is a new member and a rebalance."""
    for static in (True, False):
        cluster, (c1, c2), _join = _group(static=static)
        cluster.run(until=5)
        before = (list(c1.assignment), list(c2.assignment))
        cluster.names.get("consumer-2").crash()                     # the member's process, not only its client
        cluster.run(until=6)
        cluster.names.get("consumer-2").restart()
        cluster.run(until=12)
        h = cluster.history.to_frame()
        rebalanced = ((h["f"] == "assign") & (h["process"] == "consumer-1") & (h["time"] > 5)).any()
        if static:
            assert (list(c1.assignment), list(c2.assignment)) == before and not rebalanced
        else:
            assert rebalanced


DUP = dict(topic={"partitions": 2}, workload={"consumers": 2, "messages": 4000, "rate": 400,
                                              "processing_time": 0.004})


def test_a_crash_after_processing_before_the_commit_processes_twice():
    """commit after processing: a member that dies between the two leaves processed records uncommitted; the
    new owner starts from the last commit and applies them again (at-least-once)."""
    result = edsim.simulate(topic=DUP["topic"], workload={**DUP["workload"], "commit": "after-process"},
                            faults=[faults.crash("consumer-1", at=3.0)], seed=1)
    assert result.anomalies["duplicate-processing"] > 0
    assert result.anomalies["lost-processing"] == 0
    case = result.anomaly_cases["duplicate-processing"].iloc[0]
    assert "consumer-1" in case["evidence"] and "consumer-2" in case["evidence"]


def test_a_commit_before_processing_then_a_crash_loses_records():
    """commit first, then process: a member that dies in between has committed records it never applied; the new
    owner starts after them (at-most-once)."""
    result = edsim.simulate(topic=DUP["topic"], workload={**DUP["workload"], "commit": "before-process"},
                            faults=[faults.crash("consumer-1", at=3.0)], seed=1)
    assert result.anomalies["lost-processing"] > 0
    assert "no consumer ever processed" in result.anomaly_cases["lost-processing"]["evidence"].iloc[0]


SLOW = dict(topic={"partitions": 2}, workload={"consumers": 2, "messages": 3000, "rate": 1000,
                                               "processing_time": 0.01, "commit": "after-process"})


def test_processing_longer_than_max_poll_interval_evicts_the_member():
    """KIP-62: a poll() that does not come back within max.poll.interval.ms makes the member leave; its commit
    then fails and the new owner processes the same records again."""
    result = edsim.simulate(**SLOW, consumer={"max.poll.interval.ms": 2000}, seed=1)
    h = result.history
    failed = h[(h["f"] == "commit") & (h["type"] == "fail")]
    assert len(failed) > 0
    assert set(failed["error"].astype(str)) <= {"UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS"}
    assert (h["detail"].str.contains("max.poll.interval.ms expired")).any()
    assert result.anomalies["duplicate-processing"] > 0


def test_smaller_polls_keep_the_member_in_the_group():
    result = edsim.simulate(**SLOW, consumer={"max.poll.interval.ms": 2000, "max.poll.records": 100}, seed=1)
    h = result.history
    assert not (h["detail"].str.contains("max.poll.interval.ms expired")).any()
    assert result.anomalies["duplicate-processing"] == 0


def test_the_group_survives_its_coordinators_broker():
    """The coordinator is the leader of the group's __consumer_offsets partition: when that broker dies the
    partition's new leader loads the group and its committed offsets from the log and carries on."""
    result = edsim.simulate(topic={"partitions": 4}, workload={"consumers": 2, "messages": 6000, "rate": 300,
                                                              "commit": "after-process"},
                            faults=[faults.crash("coordinator", at=5.0, restart_after=10.0)], seed=1)
    crashed = result.faults[0][2][0]
    h = result.history
    ok = h[(h["f"] == "commit") & (h["type"] == "ok")]
    assert (ok["time"] > 5.5).any() and (ok["time"] < 5.0).any()
    assert result.anomalies["lost-processing"] == 0
    final = ok.sort_values("time").groupby("partition")["offset"].last()
    logs = result.truth.replicas().query("role == 'leader' and topic == 'events'").set_index("partition")
    assert (final.sort_index() == logs["log_end"].sort_index()).all()     # every record processed and committed
    assert crashed.startswith("broker-")


def test_commit_sync_raises_commit_failed_after_eviction():
    cluster, (c1, c2), _join = _group(**{"session.timeout.ms": 6000})
    cluster.run(until=3)
    c1.pause()
    cluster.run(until=12)                                             # consumer-1 missed its heartbeats
    c1.resume()
    errors = []

    def commit(env):
        try:
            yield from c1.commit_sync({("events", 0): 0})
        except CommitFailedException as error:
            errors.append(error)

    cluster.env.process(commit(cluster.env))
    cluster.run(until=13)
    assert errors and "removed from it" in str(errors[0])


CONSUMER_FAULT = st.one_of(
    st.builds(lambda c, at, d: faults.crash(c, at=at, restart_after=d),
              st.sampled_from(["consumer-1", "consumer-2", "consumer-3"]),
              st.floats(0.5, 8.0).map(lambda t: round(t, 2)), st.floats(0.1, 20.0).map(lambda t: round(t, 2))),
    st.builds(lambda c, at, d: faults.pause(c, at=at, duration=d),
              st.sampled_from(["consumer-1", "consumer-2", "consumer-3"]),
              st.floats(0.5, 8.0).map(lambda t: round(t, 2)), st.floats(0.1, 60.0).map(lambda t: round(t, 2))),
)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=st.lists(CONSUMER_FAULT, min_size=1, max_size=3), seed=st.integers(0, 10_000))
def test_after_process_commits_never_lose_processing(schedule, seed):
    """Crashes (and restarts: a member leaving and joining again) and pauses of any members, with commits after
    processing: records may be processed twice, never skipped."""
    result = edsim.simulate(topic={"partitions": 3},
                            workload={"consumers": 3, "messages": 2000, "rate": 200, "processing_time": 0.002,
                                      "commit": "after-process"},
                            faults=schedule, seed=seed)
    assert result.anomalies["lost-processing"] == 0, result.anomaly_cases["lost-processing"]["evidence"].head(3)



# ---- KIP-580: the group protocol's retries back off and coalesce -------------------------------------------------
def _lookups(cluster, monkeypatch, name="consumer-1"):
    """The times at which ``name`` sends FindCoordinator requests (counted on the wire)."""
    times = []
    network = cluster.world.network
    send = network.send

    def counting(src, dst, message):
        if src.name == name and type(message).__name__ == "FindCoordinatorRequest":
            times.append(cluster.now)
        return send(src, dst, message)

    monkeypatch.setattr(network, "send", counting)
    return times


def test_coordinator_lookups_back_off_exponentially_up_to_retry_backoff_max(monkeypatch):
    """KIP-580 (Kafka 3.7+): with the group's __consumer_offsets partition offline every FindCoordinator is
    answered COORDINATOR_NOT_AVAILABLE, and the member asks again after retry.backoff.ms doubling per failure up to
    retry.backoff.max.ms (1 s), jittered by ±20% and capped after the jitter (Java's ExponentialBackoff,
    CoordinatorRequestManager). Before, every failure started its own retry chain: hundreds of requests a second."""
    cluster = edsim.Cluster(brokers=3, seed=1, broker={"group.initial.rebalance.delay.ms": 0,
                                                      "offsets.topic.replication.factor": 1})
    cluster.create_topic("events", partitions=2)
    cluster.kafka.ensure_offsets_topic()
    cluster.service("consumer-1", edsim.ServiceSpec(Member, instance_names=["consumer-1"]))
    cluster.run(until=3)
    times = _lookups(cluster, monkeypatch)
    cluster.inject(faults.crash("coordinator:g", at=3.0))            # its only replica: the partition goes offline
    cluster.run(until=33)
    # the controller fences the broker after broker.session.timeout.ms (9 s); until then lookups name the dead broker
    offline = [t for t in times if t > 3.0 + 9.0]
    gaps = [b - a for a, b in zip(offline, offline[1:])]
    assert 0.08 <= gaps[0] <= 0.13                                   # retry.backoff.ms, jittered, plus one RTT
    assert gaps[1] > gaps[0] and gaps[2] > gaps[1]                   # doubling...
    assert max(gaps) <= 1.0 + 0.01                                   # ...never beyond retry.backoff.max.ms (+ RTT)
    assert all(g >= 0.79 for g in gaps[5:])                          # 1 s, or jittered below it
    assert 18 <= len(offline) <= 26                                  # about one a second, not ten or hundreds


def test_a_member_cut_off_from_every_broker_asks_rarely_and_comes_back(monkeypatch):
    """Every broker down for 4 s: no node to ask (Java's leastLoadedNode is null while every connection backs off),
    so the member sends only a handful of lookups; once the brokers are back it finds the coordinator and the
    group consumes again."""
    cluster, (c1,), _join = _group(members=1)
    cluster.run(until=3)
    times = _lookups(cluster, monkeypatch)
    cluster.inject(*[faults.crash(b, at=3.0, restart_after=4.0) for b in (1, 2, 3)])
    cluster.run(until=7.0)
    assert len(times) <= 8
    cluster.run(until=20)
    assert c1.membership.state == "stable" and c1.membership.coordinator >= 0
    assert sorted(c1.assignment) == [("events", p) for p in range(4)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_restarted_member_resumes_from_the_committed_offsets(seed):
    """A member that crashed mid-commit restarts, rejoins and resumes: the group processes every record (the
    coordinator waits session.timeout.ms for the old incarnation, then rebalances). Kafka 4.x fidelity, item 1:
    before services a crash could leave commit_sync waiting for ever on a callback the crash discarded."""
    result = edsim.simulate(topic={"partitions": 6},
                            workload={"messages": 2000, "consumers": 2, "commit": "after-process"},
                            consumer={"session.timeout.ms": 10000},
                            faults=[faults.crash("consumer-1", at=1.0, restart_after=1.0)], seed=seed)
    h = result.history
    processed = h[(h["f"] == "process") & (h["type"] == "ok")]
    assert processed["value"].nunique() == 2000
    assert (processed[processed["process"] == "consumer-1"]["time"] > 2.0).any()
    assert result.anomalies["lost-processing"] == 0


@pytest.mark.parametrize("given", [{"heartbeat.interval.ms": 45000},
                                   {"session.timeout.ms": 10000, "heartbeat.interval.ms": 12000}])
def test_heartbeat_interval_must_be_below_the_session_timeout(given):
    """The Java client refuses heartbeat.interval.ms >= session.timeout.ms when the consumer is built
    (``consumer.internals.Heartbeat``: "Heartbeat must be set lower than the session timeout"): a ConfigError
    before the run, naming both keys and their values."""
    with pytest.raises(edsim.ConfigError) as error:
        edsim.Scenario(consumer=given)
    text = str(error.value)
    hb = given["heartbeat.interval.ms"]
    st_ = given.get("session.timeout.ms", 45000)
    assert f"heartbeat.interval.ms={hb}" in text and f"session.timeout.ms={st_}" in text
    with pytest.raises(edsim.ConfigError):
        edsim.Cluster(3).consumer({"group.id": "g", **given})


def test_broker_group_session_timeout_bounds_have_kafkas_defaults():
    from edsim.configs import BROKER, Config
    b = Config("broker", BROKER, {})
    assert (b["group.min.session.timeout.ms"], b["group.max.session.timeout.ms"]) == (6000, 1800000)


@pytest.mark.parametrize("session", [1000, 2000000])
def test_coordinator_refuses_a_session_timeout_outside_the_broker_bounds(session):
    """The group coordinator answers JoinGroup with INVALID_SESSION_TIMEOUT when session.timeout.ms lies outside
    group.min.session.timeout.ms .. group.max.session.timeout.ms (GroupCoordinatorService.joinGroup); the Java
    client treats it as fatal (AbstractCoordinator.JoinGroupResponseHandler raises it out of poll()). The member
    never joins, the error is in the history, and the summary says so; the run still ends."""
    result = edsim.simulate(consumer={"session.timeout.ms": session, "heartbeat.interval.ms": 300},
                            workload={"messages": 200, "rate": 200}, seed=1)
    h = result.history
    refused = h[(h["error"] == "INVALID_SESSION_TIMEOUT") & (h["process"] == "consumer-1")]
    assert len(refused) >= 1 and (refused["type"] == "fail").all()
    assert len(refused) <= 3                              # not retried over and over
    assert not len(assigns(result, "consumer-1"))
    assert result.counts()["processed"] == 0
    text = result.summary().to_string()
    assert "INVALID_SESSION_TIMEOUT" in text and f"session.timeout.ms={session}" in text


def test_a_session_timeout_within_the_bounds_joins():
    result = edsim.simulate(consumer={"session.timeout.ms": 6000, "heartbeat.interval.ms": 2000},
                            workload={"messages": 200, "rate": 200}, seed=1)
    assert result.counts()["processed"] == 200
