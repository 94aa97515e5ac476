"""The network: one-way messages with latency and jitter, FIFO per connection as TCP keeps them, and faults.

Faults are per directed link: *blocked* links (partitions, isolation) lose everything silently until they heal;
*drop* rules lose each message independently with a probability (a lossy middlebox: the sender's own timeouts and
retries are what recover); *slow* nodes multiply the latency of what they send and receive while the fault lasts
(a message keeps the delay it was sent with). A message sent to a crashed node is refused: the sender learns of it one latency later, as a TCP reset; a
node that crashes resets its open connections the same way. A node that lost power does neither: what is sent to
it vanishes, and its peers find out by their timeouts. A client that gives up on a connection opens a new
one (``reconnect``); what the old one still carries arrives all the same.
"""
from __future__ import annotations

from math import log

from .world import Timer


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
            # TCP retransmits what the partition swallowed soon after it heals: tell the sender.
            node = self.world.nodes.get(a)
            if node is not None and node.up:
                node._fire(node.incarnation, node.on_link_restored, (b,))

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
        if link in self.blocked:
            return
        if self.drops and link in self.drops:
            for p in self.drops[link]:
                if self._rng.random() < p:
                    return
        dst = self.world.nodes[dst_name]
        self.sent += 1
        if not dst.up:
            # a crashed process's machine answers with a reset; a machine without power answers nothing
            if not dst.powered_off and (dst_name, src.name) not in self.blocked:
                self._schedule(dst, src, Disconnected(dst_name, message))
            return
        self._schedule(src, dst, message)

    def reconnect(self, a: str, b: str):
        """A new connection between ``a`` and ``b``: it does not queue behind what the old one still holds."""
        self._last.pop((a, b), None)
        self._last.pop((b, a), None)

    def _schedule(self, src, dst, message):
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
        Timer(env, at - now, dst.deliver, (message, dst.incarnation))

    def node_crashed(self, node):
        """Reset every connection to ``node``: its peers hear of it one latency later."""
        for peer in self.world.nodes.values():
            if peer is node or not peer.up or (node.name, peer.name) in self.blocked:
                continue
            self.world.call_later(self._delay(node.name, peer.name), self._reset, peer, peer.incarnation, node.name)

    @staticmethod
    def _reset(peer, incarnation, name):
        if peer.incarnation == incarnation and peer.up:
            peer._fire(incarnation, peer.on_disconnect, (name,))
