"""The network's connections behave as TCP's do under a partition: what a cut link carries is held and arrives,
in order, at the sender's first retransmission after the heal (Linux: RTO from TCP_RTO_MIN = 200 ms, doubling to
TCP_RTO_MAX = 120 s, up to net.ipv4.tcp_retries2 = 15 retransmissions; tcp(7), RFC 6298 section 5). Jepsen's
partitions are iptables rules that drop packets, which TCP retransmits after the rules are lifted the same way."""
import pytest

from edsim.engine import Network, Node, World
from edsim.engine.network import Disconnected, retransmissions


class Echo(Node):
    """A node that notes when each message reached it."""

    def __init__(self, world, name):
        super().__init__(world, name)
        self.got = []

    def receive(self, message):
        self.got.append((round(self.now, 6), message if not isinstance(message, Disconnected) else "RST"))


@pytest.fixture
def net():
    world = World(seed=1)
    network = Network(world, latency=0.01, jitter=0.0)
    a, b = Echo(world, "a"), Echo(world, "b")
    return world, network, a, b


def at(world, t, fn, *args):
    world.call_later(t - world.env.now, fn, *args)


def test_retransmission_schedule_doubles_from_200_ms_and_gives_up_after_15():
    times, give_up = retransmissions(0.0)
    assert times[:4] == pytest.approx([0.2, 0.6, 1.4, 3.0])
    assert len(times) == 15
    assert times[-1] - times[-2] == pytest.approx(120.0)        # capped at TCP_RTO_MAX
    assert give_up == pytest.approx(924.6)                      # the classic ~15.4 minutes of tcp_retries2


def test_a_partition_holds_messages_and_delivers_them_in_order_at_the_first_retransmission_after_the_heal(net):
    world, network, a, b = net
    network.block("a", "b")
    at(world, 0.0, network.send, a, "b", "m1")
    at(world, 0.1, network.send, a, "b", "m2")
    at(world, 0.5, network.unblock, "a", "b")
    at(world, 0.55, network.send, a, "b", "m3")                 # after the heal, still behind what is held
    world.env.run(until=5)
    # m1 went at 0, so retransmissions at 0.2, 0.6: the first after the heal (0.5) is 0.6, plus 10 ms latency
    assert b.got == [(0.61, "m1"), (0.61, "m2"), (0.61, "m3")]


def test_a_link_cut_again_before_the_retransmission_waits_for_the_next_heal(net):
    world, network, a, b = net
    network.block("a", "b")
    at(world, 0.0, network.send, a, "b", "m1")
    at(world, 0.5, network.unblock, "a", "b")
    at(world, 0.55, network.block, "a", "b")
    at(world, 2.0, network.unblock, "a", "b")
    world.env.run(until=10)
    assert b.got == [(3.01, "m1")]                              # retransmissions 0.2, 0.6, 1.4, 3.0


def test_the_reverse_direction_is_held_on_its_own(net):
    world, network, a, b = net
    network.block("b", "a")
    at(world, 0.0, network.send, a, "b", "request")
    at(world, 0.0, network.send, b, "a", "response")
    at(world, 1.0, network.unblock, "b", "a")
    world.env.run(until=5)
    assert b.got == [(0.01, "request")]
    assert a.got == [(1.41, "response")]


def test_a_new_connection_does_not_queue_behind_the_old_one_which_still_delivers(net):
    world, network, a, b = net
    network.block("a", "b")
    at(world, 0.0, network.send, a, "b", "old")
    at(world, 0.3, network.reconnect, "a", "b")
    at(world, 0.3, network.send, a, "b", "new")                 # still cut: held on the new connection
    at(world, 0.5, network.unblock, "a", "b")
    world.env.run(until=5)
    # old: sent at 0, retransmitted at 0.6; new: sent at 0.3, retransmitted at 0.5 + ... = 0.3 + 0.2 = 0.5
    assert b.got == [(0.51, "new"), (0.61, "old")]


def test_a_crashed_sender_loses_what_it_held(net):
    world, network, a, b = net
    network.block("a", "b")
    at(world, 0.0, network.send, a, "b", "m1")
    at(world, 0.2, a.crash)
    at(world, 0.3, a.restart)
    at(world, 0.4, network.send, a, "b", "after restart")
    at(world, 0.5, network.unblock, "a", "b")
    world.env.run(until=5)
    assert b.got == [(0.61, "after restart")]                   # sent at 0.4: retransmitted at 0.6


@pytest.mark.parametrize("power_loss, expected", [(False, [(0.61, "RST")]), (True, [])])
def test_what_reaches_a_crashed_receiver_after_the_heal_is_reset_unless_it_lost_power(net, power_loss, expected):
    world, network, a, b = net
    network.block("a", "b")
    at(world, 0.0, network.send, a, "b", "m1")
    at(world, 0.1, b.crash, power_loss)
    at(world, 0.5, network.unblock, "a", "b")
    world.env.run(until=5)
    assert b.got == []
    assert a.got == expected


def test_a_partition_longer_than_tcp_retries2_breaks_the_connection(net):
    world, network, a, b = net
    network.block("a", "b")
    at(world, 0.0, network.send, a, "b", "m1")
    at(world, 1000.0, network.unblock, "a", "b")
    world.env.run(until=1010)
    assert b.got == []
    assert a.got == [(924.6, "RST")]                            # ETIMEDOUT: the sender's own kernel says so


def test_drop_still_loses_messages_for_good(net):
    world, network, a, b = net
    network.add_drop("a", "b", 1.0)
    at(world, 0.0, network.send, a, "b", "m1")
    at(world, 0.5, network.remove_drop, "a", "b", 1.0)
    world.env.run(until=5)
    assert b.got == []


def test_a_join_group_sent_into_a_short_partition_arrives_after_the_heal():
    """A consumer isolated for 0.67 s while it joins: over TCP its requests are retransmitted after the heal, so
    it joins within seconds (the group's first rebalance waits group.initial.rebalance.delay.ms = 3 s anyway),
    instead of waiting out the JoinGroup's rebalance timeout + 5 s (305 s) as a model that loses them does."""
    import edsim
    from edsim import faults
    result = edsim.simulate(topic={"partitions": 4}, workload={"consumers": 2, "messages": 400, "rate": 100},
                            faults=[faults.isolate("consumer-2", at=0.0, heal_after=0.67)], seed=1)
    h = result.history
    assigned = h[(h["f"] == "assign") & (h["process"] == "consumer-2") & (h["type"] == "ok")]
    assert len(assigned) and assigned["time"].min() < 5.0
    assert sum(result.anomalies.values()) == 0


@pytest.mark.parametrize("config, expected", [
    ({}, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]),                                          # Kafka's defaults
    ({"reconnect.backoff.ms": 300, "reconnect.backoff.max.ms": 500}, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
])
def test_a_client_waits_reconnect_backoff_ms_doubling_to_its_max_between_connection_attempts(config, expected):
    """A broker that is down resets each new connection; the client tries again after reconnect.backoff.ms,
    doubling with each failure up to reconnect.backoff.max.ms (Java's ClusterConnectionStates, without its 20%
    jitter). The crash itself broke the first connection (one failure: reconnect.backoff.ms), so the gaps between
    the attempts that follow start at the second step. A failed attempt counts once, however it is learnt of (the
    reset, and the ApiVersions request it fails)."""
    import edsim
    from edsim import faults
    c = edsim.Cluster(brokers=3, seed=1)
    c.create_topic("t", partitions=1)
    p = c.producer(config)
    attempts = []
    connect = c.world.network.reconnect
    c.world.network.reconnect = lambda src, dst: (attempts.append(c.env.now) if dst == "broker-2" else None,
                                                 connect(src, dst))[1]
    c.inject(faults.crash(2, at=0.5))

    def keep_asking(env):
        yield env.timeout(0.6)
        while env.now < 8.0:
            p.ready(2)
            yield env.timeout(0.001)
    c.env.process(keep_asking(c.env))
    c.run(until=8.0)
    gaps = [round(b - a, 2) for a, b in zip(attempts, attempts[1:])]
    assert gaps[:len(expected)] == pytest.approx(expected, abs=0.01)


def test_a_restarted_receiver_gets_new_data_on_a_new_connection_not_behind_what_the_old_one_held(net):
    """b held a message for a on a cut link; a crashed and restarted. What b sends a afterwards goes on a new
    connection (a's new process accepted it), so it does not queue behind the old connection's held data, which
    still arrives at its retransmission and is reset by the new process."""
    world, network, a, b = net
    network.block("b", "a")
    at(world, 0.1, network.send, b, "a", "old")
    at(world, 0.2, a.crash)
    at(world, 0.3, a.restart)
    at(world, 0.5, network.unblock, "b", "a")
    at(world, 0.6, network.send, b, "a", "new")
    world.env.run(until=5)
    assert a.got == [(0.61, "new")]                             # not at 0.71, behind "old"
    assert b.got == [(0.71, "RST")]                             # old: retransmitted at 0.7, reset by a's new process


def test_what_is_sent_to_a_machine_without_power_is_retransmitted_until_it_is_back_then_reset(net):
    """A machine without power answers nothing, so TCP keeps retransmitting; the first retransmission after it is
    back reaches a kernel with no such connection, which resets it. Later data goes on a new connection."""
    world, network, a, b = net
    at(world, 0.0, b.crash, True)
    at(world, 0.1, network.send, a, "b", "m1")                 # retransmitted at 0.3, 0.7, 1.5
    at(world, 1.0, b.restart)
    at(world, 1.1, network.send, a, "b", "new")
    world.env.run(until=5)
    assert b.got == [(1.11, "new")]
    assert a.got == [(1.51, "RST")]


def test_a_machine_that_stays_without_power_breaks_the_connection_after_tcp_retries2(net):
    world, network, a, b = net
    at(world, 0.0, b.crash, True)
    at(world, 0.0, network.send, a, "b", "m1")
    world.env.run(until=1000)
    assert b.got == [] and a.got == [(924.6, "RST")]            # ETIMEDOUT, as for a cut that never heals
