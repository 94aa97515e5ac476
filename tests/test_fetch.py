"""Fetches shaped as Kafka sends them: one request per (follower, leader) broker pair covering all its partitions,
in an incremental fetch session (KIP-227); consumers one request per leader; the leader holds a request until any
of its partitions has something (DelayedFetch)."""
import edsim
from edsim.kafka import protocol as P


def _spy(cluster):
    """Every FetchRequest and FetchResponse sent, as (time, src, dst, message)."""
    seen = []
    network = cluster.kafka.world.network
    send = network.send

    def spying(src, dst, message):
        if type(message) in (P.FetchRequest, P.FetchResponse):
            seen.append((cluster.env.now, src.name, dst, message))
        return send(src, dst, message)

    network.send = spying
    return seen


def _writer(cluster, producer, topic, partitions, every=0.01, start=0.0):
    def app(env):
        yield env.timeout(start)
        value = 0
        while True:
            for p in partitions:
                producer.send(topic, value, partition=p)
                value += 1
            yield env.timeout(every)
    cluster.env.process(app(cluster.env))


def _led_by(cluster, topic, leader):
    return [tp for tp in cluster.kafka.partitions(topic) if cluster.kafka.leader(tp) == leader]


def test_followers_send_one_fetch_per_leader_broker_covering_all_its_partitions():
    """12 partitions, RF=3 on 3 brokers: each broker follows 4 partitions of each other broker. Its replica fetcher
    for a leader sends one request for all 4 (the first a full one opening the session), never two at once;
    idle, that is one request per pair per replica.fetch.wait.max.ms, not one per partition."""
    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("events", partitions=12)
    seen = _spy(cluster)
    cluster.run(until=2.0)
    follower_requests = [(t, s, d, m) for t, s, d, m in seen if type(m) is P.FetchRequest and m.replica >= 0]
    pairs = sorted({(s, d) for _t, s, d, _m in follower_requests})
    assert len(pairs) == 6
    for src, dst in pairs:
        mine = [m for _t, s, d, m in follower_requests if (s, d) == (src, dst)]
        first = mine[0]
        leader = int(dst.split("-")[1])
        assert first.session_epoch == 0
        assert sorted(first.partitions) == _led_by(cluster, "events", leader)
        assert mine[1].session_id != 0
        assert all(m.session_epoch > 0 and m.session_id == mine[1].session_id for m in mine[1:])
        # idle: the leader holds each request 0.5 s, so about 4 in 2 s (the old model: 4 per partition)
        assert 3 <= len(mine) <= 6
    # one request in flight per fetcher: requests and answers alternate on each pair
    for src, dst in pairs:
        sequence = [type(m) for _t, s, d, m in seen if (s, d, type(m)) in ((src, dst, P.FetchRequest),
                                                                           (dst, src, P.FetchResponse))]
        assert all(a is not b for a, b in zip(sequence, sequence[1:])), sequence


def test_incremental_fetch_answers_carry_only_the_partitions_that_changed():
    """Writes to one partition of a leader: the answers of its followers' sessions carry that partition (records,
    a new high watermark) and leave out the leader's other, unchanged partitions; the incremental requests carry
    only the partition whose fetch offset moved."""
    cluster = edsim.Cluster(brokers=3, seed=2)
    cluster.create_topic("events", partitions=6)
    hot = _led_by(cluster, "events", 1)[0]
    producer = cluster.producer({"linger.ms": 0})
    seen = _spy(cluster)
    _writer(cluster, producer, "events", [hot[1]], start=0.2)
    cluster.run(until=1.5)
    from_leader = [m for t, s, d, m in seen if s == "broker-1" and d != "producer" and type(m) is P.FetchResponse
                   and m.session_id and t > 0.3]
    assert len(from_leader) > 20
    assert all(list(m.partitions) in ([], [hot]) for m in from_leader)
    assert any(m.partitions[hot].batches for m in from_leader if m.partitions)
    to_leader = [m for t, s, d, m in seen if d == "broker-1" and type(m) is P.FetchRequest and m.replica >= 0
                 and t > 0.3]
    assert all(m.session_epoch > 0 and list(m.partitions) in ([], [hot]) for m in to_leader)
    # what was left out was not lost: the followers hold the hot partition's records
    leader_log = cluster.kafka.brokers[1].replicas[hot].log
    for b in (2, 3):
        assert cluster.kafka.brokers[b].replicas[hot].log.end >= leader_log.end - 20


def test_a_consumer_sends_one_fetch_per_leader_for_its_partitions():
    """A consumer assigned all 6 partitions (2 per broker) sends each broker one request for both, and never a
    second one to a broker before the first is answered (AbstractFetch.nodesWithPendingFetchRequests)."""
    cluster = edsim.Cluster(brokers=3, seed=3)
    cluster.create_topic("events", partitions=6)
    producer = cluster.producer({"linger.ms": 5})
    _writer(cluster, producer, "events", range(6), every=0.02)
    consumer = cluster.consumer({"auto.offset.reset": "earliest"}, name="reader")
    seen = _spy(cluster)
    consumer.assign(cluster.kafka.partitions("events"))

    def app():
        while True:
            yield from consumer.poll(0.1)

    cluster.env.process(app())
    cluster.run(until=2.0)
    requests = [(d, m) for _t, s, d, m in seen if s == "reader" and type(m) is P.FetchRequest]
    assert len(requests) > 10
    for broker in (1, 2, 3):
        mine = [m for d, m in requests if d == f"broker-{broker}"]
        led = _led_by(cluster, "events", broker)
        assert all(set(m.partitions) <= set(led) for m in mine)
        # both its partitions in one request (the first may carry one: the other's position was still being
        # asked for with ListOffsets)
        both = [m for m in mine if sorted(m.partitions) == led]
        assert len(both) >= len(mine) // 2
        sequence = [type(m) for _t, s, d, m in seen if (s, d) in (("reader", f"broker-{broker}"),
                                                                   (f"broker-{broker}", "reader"))]
        assert all(a is not b for a, b in zip(sequence, sequence[1:])), sequence


def test_a_partition_error_backs_off_only_that_partition():
    """Broker 2 fetches two partitions from broker 1. One of them gets an error (its fetch carries a leader epoch
    the leader does not know yet: UNKNOWN_LEADER_EPOCH): that partition is left out for replica.fetch.backoff.ms
    (AbstractFetcherThread.delayPartitions) while the other keeps replicating in the same fetcher; once the
    error goes, it catches up."""
    cluster = edsim.Cluster(brokers=3, seed=4)
    cluster.create_topic("events", partitions=6)
    bad, good = _led_by(cluster, "events", 1)[:2]
    producer = cluster.producer({"linger.ms": 0, "acks": "1"})    # acks=1: no write waits for broker 2
    _writer(cluster, producer, "events", [bad[1], good[1]], every=0.01, start=0.1)
    cluster.run(until=1.0)
    follower = cluster.kafka.brokers[2]
    fetcher = follower.fetchers[1]
    replica = follower.replicas[bad]
    replica.leader_epoch += 1                             # as if it had heard of a newer leader epoch first
    fetcher.dirty[bad] = None
    cluster.run(until=1.1)
    assert bad in fetcher.delayed and good not in fetcher.delayed
    stuck, moving = replica.log.end, follower.replicas[good].log.end
    cluster.run(until=1.6)
    leader = cluster.kafka.brokers[1]
    assert replica.log.end == stuck                        # left out...
    assert follower.replicas[good].log.end > moving + 20   # ...while the other partition keeps replicating
    assert follower.replicas[good].log.end >= leader.replicas[good].log.end - 5
    replica.leader_epoch -= 1                             # the error goes: after the backoff it catches up
    cluster.run(until=3.0)
    assert bad not in fetcher.delayed
    assert replica.log.end >= leader.replicas[bad].log.end - 5


def test_a_held_fetch_answers_when_data_arrives_on_any_of_its_partitions_and_at_max_wait_otherwise():
    """A consumer's fetch of two idle partitions of one leader is held: it is answered when a record reaches the
    high watermark of either partition, and otherwise after fetch.max.wait.ms, empty."""
    cluster = edsim.Cluster(brokers=3, seed=5)
    cluster.create_topic("events", partitions=6)
    a, b = _led_by(cluster, "events", 1)[:2]
    consumer = cluster.consumer({"auto.offset.reset": "earliest", "fetch.max.wait.ms": 300}, name="reader")
    producer = cluster.producer({"linger.ms": 0})
    seen = _spy(cluster)
    consumer.assign([a, b])

    def app():
        while True:
            yield from consumer.poll(0.1)

    def write(env):
        yield env.timeout(1.25)
        producer.send("events", 7, partition=b[1])

    cluster.env.process(app())
    cluster.env.process(write(cluster.env))
    cluster.run(until=2.0)
    exchanges = [(t, m) for t, s, d, m in seen if "reader" in (s, d) and "broker-1" in (s, d)]
    answers = []
    asked = None
    for t, m in exchanges:
        if type(m) is P.FetchRequest:
            asked = t
            if t > 0.5:                                   # (before, b's position was still being asked for)
                assert set(m.partitions) == {a, b}
        elif asked is not None:
            answers.append((round(t - asked, 3), sum(len(x.batches) for x in m.partitions.values()), t))
    idle = [wait for wait, n, t in answers if 0.3 < t < 1.25 and not n]
    assert len(idle) >= 2 and all(0.3 <= wait <= 0.41 for wait in idle)   # max_wait (expired on a 0.1 s tick)
    woken = [(wait, t) for wait, n, t in answers if n]
    assert len(woken) == 1
    wait, t = woken[0]
    assert 1.25 < t < 1.27 and wait < 0.3            # answered as the record was committed, not at max_wait
    assert consumer.position(b) == 1


def test_a_leader_that_lost_its_sessions_answers_session_not_found_and_the_follower_starts_a_new_one():
    """KIP-227: sessions live in the leader's memory (a crash loses them: Broker._reset_memory). An incremental
    request on a session the leader does not know gets FETCH_SESSION_ID_NOT_FOUND, and the fetcher's next
    request is a full one that opens a new session."""
    from edsim.kafka.fetch import FetchManager
    cluster = edsim.Cluster(brokers=3, seed=6)
    cluster.create_topic("events", partitions=6)
    seen = _spy(cluster)
    cluster.run(until=1.0)
    leader = cluster.kafka.brokers[1]
    old = dict(leader.fetch_manager.sessions)
    assert sorted(old) == [2, 3]
    stale, leader.fetch_manager = leader.fetch_manager, FetchManager(leader)    # what a restart forgets
    for replica in leader.replicas.values():
        replica.sessions = []
    stale.expire(float("inf"))                            # (the requests it held are answered)
    cluster.run(until=2.5)
    answers = [m for t, s, d, m in seen if s == "broker-1" and type(m) is P.FetchResponse and t > 1.0]
    assert sum(m.error == P.FETCH_SESSION_ID_NOT_FOUND for m in answers) == 2
    full = [m for t, s, d, m in seen if d == "broker-1" and type(m) is P.FetchRequest and t > 1.0
            and m.session_epoch == 0]
    assert len(full) == 2 and all(sorted(m.partitions) == _led_by(cluster, "events", 1) for m in full)
    sessions = leader.fetch_manager.sessions
    assert sorted(sessions) == [2, 3] and all(sessions[b].id != old[b].id for b in (2, 3))


def test_buffered_records_are_returned_before_a_fetch_is_sent_so_the_next_fetch_includes_their_partition():
    """Java's pollForFetches returns records already buffered at once and sends fetches after handing them over
    (ClassicKafkaConsumer.poll: ``sendFetches()`` once a fetch is collected), so a partition drained by a poll is
    in the next request to its leader. Sending first would leave it out (it still had buffered records), and with
    one request in flight per broker its next records would wait out that request's fetch.max.wait.ms."""
    cluster = edsim.Cluster(brokers=1, seed=1, broker={"offsets.topic.replication.factor": 1})
    cluster.create_topic("events", {"partitions": 2, "replication.factor": 1})
    producer = cluster.producer({"linger.ms": 0})
    consumer = cluster.consumer({"auto.offset.reset": "earliest"}, name="reader")
    consumer.assign(cluster.kafka.partitions("events"))
    got = {}

    def writer(env):
        yield env.timeout(1.0)
        for v in range(5):
            producer.send("events", v, partition=0)
        yield env.timeout(0.25)
        for v in range(5, 10):
            producer.send("events", v, partition=0)

    def app(env):
        while True:
            records = yield from consumer.poll(0.0)
            for record in records:
                got[record.value] = env.now
            yield env.timeout(0.05)                      # processing: the answer lands in the buffer meanwhile

    cluster.env.process(writer(cluster.env))
    cluster.env.process(app(cluster.env))
    cluster.run(until=3.0)
    assert sorted(got) == list(range(10))
    # the second five were written at 1.25 s; a poll within the next processing pause returns them, not one after
    # a 0.5 s fetch.max.wait.ms spent on a request for partition 1 alone
    assert max(got.values()) < 1.25 + 0.1


def test_a_consumer_fetches_only_while_its_application_polls():
    """The classic consumer has no background fetcher: fetches are sent from poll() (ClassicKafkaConsumer.poll /
    pollForFetches), so while the application processes for 2 s nothing is asked for beyond the request already
    out; its next poll fetches again at once."""
    cluster = edsim.Cluster(brokers=1, seed=1, broker={"offsets.topic.replication.factor": 1})
    cluster.create_topic("events", {"partitions": 1, "replication.factor": 1})
    consumer = cluster.consumer({"auto.offset.reset": "earliest"}, name="reader")
    consumer.assign(cluster.kafka.partitions("events"))
    seen = _spy(cluster)

    def app(env):
        for _ in range(10):
            yield from consumer.poll(0.1)
        yield env.timeout(2.0)                           # processing, not polling
        yield from consumer.poll(0.1)

    cluster.env.process(app(cluster.env))
    cluster.run(until=4.0)
    sent = [t for t, s, _d, m in seen if s == "reader" and type(m) is P.FetchRequest]
    busy_from = max(t for t in sent if t < 1.5)          # the last request of the polling second
    during = [t for t in sent if busy_from < t < 3.0]
    assert during == [] and any(t >= 3.0 for t in sent)


def test_a_partition_assigned_again_starts_afresh_not_from_the_epoch_of_its_earlier_ownership():
    """A consumer read a partition in leader epoch 0, lost it, and gets it back at an offset written in epoch 1.
    Kept, the old epoch would go with its first fetch as the last fetched epoch, the leader would answer with a
    diverging epoch (epoch 0 ends below that offset), and the consumer would rewind and read again what it was
    given as done (the exactly_once_v2 duplicates the fault fuzzer found). Java's SubscriptionState gives a newly
    assigned partition a new state."""
    from edsim import faults
    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("events", partitions=1)
    tp = ("events", 0)
    producer = cluster.producer({"linger.ms": 0})
    consumer = cluster.consumer({"auto.offset.reset": "earliest"}, name="reader")
    consumer.assign([tp])
    read = []

    def app(env):
        for v in range(10):
            producer.send("events", v, partition=0)
        while env.now < 1.0:
            read.extend(r.value for r in (yield from consumer.poll(0.1)))
        consumer.assign([])                                # revoked
        yield env.timeout(1.0)                             # the leader moves meanwhile (leader epoch 1)
        for v in range(10, 30):                            # written after the leader change, in epoch 1
            yield producer.send("events", v, partition=0)
        consumer.assign([tp], {tp: 20})                    # back, at a committed offset of epoch 1
        while env.now < 8.0:
            read.extend(r.value for r in (yield from consumer.poll(0.1)))

    cluster.inject(faults.crash("leader", at=1.05, restart_after=0.5))   # the restart moves the leadership
    cluster.env.process(app(cluster.env))
    cluster.run(until=8.0)
    assert read == list(range(10)) + list(range(20, 30))
