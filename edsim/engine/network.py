"""The network: one-way messages with latency and jitter, FIFO per connection as TCP keeps them, and faults.

Every message travels on a connection, as Kafka's requests travel on TCP. Faults are per directed link:
*blocked* links (partitions, isolation) hold what is sent on them, as TCP does when its segments go unanswered:
the sender retransmits after a retransmission timeout that starts at 200 ms and doubles up to 120 s (Linux's
``TCP_RTO_MIN`` and ``TCP_RTO_MAX``), so after the heal the held messages arrive, in order, at the first
retransmission that gets through, and what is sent meanwhile queues behind them. After 15 retransmissions
(``net.ipv4.tcp_retries2``, about 15 minutes) the sender's kernel gives up and the connection breaks.
*drop* rules lose each message independently with a probability (a lossy middlebox: the sender's own timeouts and
retries are what recover); *slow* nodes multiply the latency of what they send and receive while the fault lasts
(a message keeps the delay it was sent with). A message that reaches a crashed process is refused: the sender
learns of it one latency later, as a TCP reset; a node that crashes resets its open connections the same way and
what they held is gone. A node that lost power resets nothing: what is sent to it goes unanswered and is
retransmitted like data on a cut link, until the machine is back and its kernel resets the connection (or
tcp_retries2 gives up); its peers find out by that, or by their own timeouts. A client that gives up on a connection (a request timeout) opens a new one (``reconnect``),
which does not queue behind the old one; what the old one still holds is delivered all the same, as the kernel
keeps sending a closed socket's data.
"""
from __future__ import annotations

from math import log

from .world import Timer

RTO_MIN = 0.2         # Linux TCP_RTO_MIN: the first retransmission timeout on a connection with a short RTT
RTO_MAX = 120.0       # TCP_RTO_MAX: the timeout doubles up to this
RETRIES = 15          # net.ipv4.tcp_retries2: retransmissions before the kernel breaks the connection


def retransmissions(first_sent: float):
    """When TCP retransmits a segment first sent at ``first_sent``, until it gives up: (times, give-up time)."""
    times, at, rto = [], first_sent, RTO_MIN
    for _ in range(RETRIES):
        at += rto
        times.append(at)
        rto = min(rto * 2, RTO_MAX)
    return times, at + rto


class _Held:
    """What one connection holds while its link is cut: messages in order, the first one's send time."""

    __slots__ = ("link", "first_sent", "messages", "releasing", "done")

    def __init__(self, link, first_sent):
        self.link = link
        self.first_sent = first_sent
        self.messages: list = []       # (message, sender incarnation, receiver incarnation)
        self.releasing = False         # a retransmission after the heal is due
        self.done = False              # delivered, given up, or its sender died


class Disconnected:
    """Delivered to a sender whose message reached a crashed node (or whose peer crashed)."""

    __slots__ = ("peer", "message")

    def __init__(self, peer, message=None):
        self.peer = peer
        self.message = message


class Network:
    def __init__(self, world, latency: float = 0.0005, jitter: float = 0.0001):
        self.world = world
        self.latency = latency
        self.jitter = jitter
        self.blocked: dict[tuple[str, str], int] = {}
        self.drops: dict[tuple[str, str], list[float]] = {}
        self.slow: dict[str, list[float]] = {}
        self._last: dict[tuple[str, str], float] = {}   # (a, b) -> when the connection's last message lands
        self._held: dict[tuple[str, str], _Held] = {}    # (a, b) -> what the current connection holds
        self._closed_held: list[_Held] = []              # held by connections since replaced (reconnect)
        self._rng = world.rng("network")
        self._lambd = 1.0 / jitter if jitter else 0.0
        self.sent = 0
        world.network = self

    # ---- faults (counted, so overlapping faults heal independently) --------------------------------------
    def block(self, a: str, b: str):
        self.blocked[(a, b)] = self.blocked.get((a, b), 0) + 1

    def unblock(self, a: str, b: str):
        n = self.blocked.get((a, b), 0) - 1
        if n > 0:
            self.blocked[(a, b)] = n
        elif self.blocked.pop((a, b), None) is not None:
            for held in self._held_on((a, b)):
                self._schedule_release(held)

    def add_drop(self, a, b, probability):
        self.drops.setdefault((a, b), []).append(probability)

    def remove_drop(self, a, b, probability):
        rules = self.drops.get((a, b), [])
        if probability in rules:
            rules.remove(probability)
        if not rules:
            self.drops.pop((a, b), None)

    def add_slow(self, node, factor):
        self.slow.setdefault(node, []).append(factor)

    def remove_slow(self, node, factor):
        factors = self.slow.get(node, [])
        if factor in factors:
            factors.remove(factor)
        if not factors:
            self.slow.pop(node, None)

    def heal(self):
        for a, b in list(self.blocked):
            self.blocked[(a, b)] = 1
            self.unblock(a, b)
        self.drops.clear()
        self.slow.clear()

    def connected(self, a: str, b: str) -> bool:
        return (a, b) not in self.blocked

    # ---- delivery ---------------------------------------------------------------------------------------
    def _delay(self, a, b):
        delay = self.latency
        if self.jitter:       # random.expovariate(1 / jitter), written out: this runs for every message
            delay += -log(1.0 - self._rng.random()) / self._lambd
        if self.slow:
            for factor in self.slow.get(a, ()):
                delay *= factor
            for factor in self.slow.get(b, ()):
                delay *= factor
        return delay

    def send(self, src, dst_name: str, message):
        """Send ``message`` from node ``src`` to the node named ``dst_name``."""
        if not src.up:
            return
        if src.paused:                       # a stalled process sends nothing until it runs again
            src._held.append((self.send, (src, dst_name, message)))
            return
        link = (src.name, dst_name)
        dst = self.world.nodes[dst_name]
        if link in self.blocked or (self._held and link in self._held):
            return self._hold(link, src, dst, message)        # cut, or behind what is held: TCP keeps order
        if self.drops and link in self.drops:
            for p in self.drops[link]:
                if self._rng.random() < p:
                    return
        self.sent += 1
        if not dst.up:
            if dst.powered_off:            # unanswered: TCP retransmits until the machine is back, then is reset
                return self._hold(link, src, dst, message)
            self._refuse(src, dst, message)
            return
        self._schedule(src, dst, message)

    def _refuse(self, src, dst, message):
        """A message reached a node that is down: a crashed process's machine answers with a reset, a machine
        without power answers nothing."""
        if not dst.powered_off and (dst.name, src.name) not in self.blocked:
            self._schedule(dst, src, Disconnected(dst.name, message))

    # ---- what a cut link holds (TCP retransmission) -----------------------------------------------------
    def _hold(self, link, src, dst, message):
        """Keep ``message`` on the connection ``link`` until a retransmission gets through. Sent while ``dst`` is
        down (a machine without power, or behind a cut), it belongs to no process there: the retransmission that
        reaches the machine after its restart is answered with a reset."""
        held = self._held.get(link)
        if held is None:
            held = self._held[link] = _Held(link, self.world.env._now)
            _, give_up = retransmissions(held.first_sent)
            self.world.call_later(give_up - held.first_sent, self._give_up, held, src.incarnation)
        held.messages.append((message, src.incarnation, dst.incarnation if dst.up else None))

    def holding_since(self, link) -> float | None:
        """When the oldest message the open connection on ``link`` still holds was sent (None: it holds none)."""
        held = self._held.get(link) if self._held else None
        return None if held is None else held.first_sent

    def _held_on(self, link):
        found = [h for h in self._closed_held if h.link == link]
        if link in self._held:
            found.append(self._held[link])
        return found

    def _schedule_release(self, held):
        """The link healed: the held messages go at the sender's next retransmission."""
        if held.releasing or held.done:
            return
        now = self.world.env._now
        times, _ = retransmissions(held.first_sent)
        at = next((t for t in times if t >= now), None)
        if at is None:
            return                     # past the last retransmission: _give_up breaks the connection
        held.releasing = True
        self.world.call_later(at - now, self._release, held)

    def _release(self, held):
        held.releasing = False
        if held.link in self.blocked or held.done:
            return                     # cut again before the retransmission: wait for the next heal
        if self.world.nodes[held.link[1]].powered_off:
            return                     # no machine to answer: its restart schedules the next retransmission
        self._forget(held)
        nodes = self.world.nodes
        src, dst = nodes[held.link[0]], nodes[held.link[1]]
        for message, src_incarnation, dst_incarnation in held.messages:
            if src.incarnation != src_incarnation:
                continue               # the sending process died: its connections died with it
            self.sent += 1
            if not dst.up or dst.incarnation != dst_incarnation:
                if dst.up or not dst.powered_off:
                    self._schedule(dst, src, Disconnected(dst.name, message))   # a new process resets it
                continue
            self._schedule(src, dst, message)

    def _give_up(self, held, src_incarnation):
        """tcp_retries2 retransmissions went unanswered: the sender's kernel breaks the connection, and the
        sender hears of it at once (ETIMEDOUT)."""
        if held.done:
            return
        self._forget(held)
        src = self.world.nodes[held.link[0]]
        if src.up and src.incarnation == src_incarnation:
            src._fire(src_incarnation, src.receive, (Disconnected(held.link[1]),))

    def _forget(self, held):
        held.done = True
        if self._held.get(held.link) is held:
            del self._held[held.link]
        elif held in self._closed_held:
            self._closed_held.remove(held)

    def reconnect(self, a: str, b: str):
        """A new connection between ``a`` and ``b``: it does not queue behind what the old one still holds."""
        self._last.pop((a, b), None)
        self._last.pop((b, a), None)
        for link in ((a, b), (b, a)):
            self._close(link)

    def _close(self, link):
        """The connection on ``link`` is replaced: what it holds is still delivered, but nothing queues behind it."""
        held = self._held.pop(link, None)
        if held is not None:
            self._closed_held.append(held)

    def _schedule(self, src, dst, message, incarnation=None):
        """Deliver ``message`` after the link's delay, never before what the same connection sent earlier
        (TCP keeps order)."""
        link = (src.name, dst.name)
        env = self.world.env
        now = env._now
        at = now + self._delay(*link)
        last = self._last.get(link, 0.0)
        if at < last:
            at = last
        self._last[link] = at
        Timer(env, at - now, dst.deliver, (message, dst.incarnation if incarnation is None else incarnation))

    def node_crashed(self, node, power_loss=False):
        """The process ``node`` died: what its connections held is gone, and (unless the machine lost power)
        every connection to it is reset: its peers hear of it one latency later."""
        if self._held or self._closed_held:
            for held in [h for h in [*self._held.values(), *self._closed_held] if h.link[0] == node.name]:
                self._forget(held)
            # what peers hold for it belongs to connections that died with it: whatever they send it after its
            # restart goes on a new connection, not behind that (the old data still arrives, and is reset)
            for link in [link for link in self._held if link[1] == node.name]:
                self._close(link)
        for link in [link for link in self._last if node.name in link]:
            del self._last[link]
        if power_loss:
            return
        for peer in self.world.nodes.values():
            if peer is node or not peer.up or (node.name, peer.name) in self.blocked:
                continue
            self.world.call_later(self._delay(node.name, peer.name), self._reset, peer, peer.incarnation, node.name)

    def node_restarted(self, node):
        """``node`` runs again: connections that held data for it while its machine was off reach it at their
        next retransmission (and are reset, their process being gone); what peers send it from now on goes on new
        connections, not behind them."""
        if self._held or self._closed_held:
            for link in [link for link in self._held if link[1] == node.name]:
                self._close(link)
            for held in [h for h in self._closed_held if h.link[1] == node.name]:
                if held.link not in self.blocked:
                    self._schedule_release(held)

    @staticmethod
    def _reset(peer, incarnation, name):
        if peer.incarnation == incarnation and peer.up:
            peer._fire(incarnation, peer.on_disconnect, (name,))
