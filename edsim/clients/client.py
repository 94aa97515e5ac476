"""What producers and consumers share: requests with correlation ids and timeouts, and cluster metadata.

Clients know brokers by id. Metadata (the leader and leader epoch of each partition) is asked of one broker at a
time, in turn, and a newer leader epoch always wins over an older one, so a stale broker cannot move a client
back (KIP-320).
"""
from __future__ import annotations

from ..engine import Node
from ..engine.network import Disconnected
from ..kafka import protocol as P

TICK = 0.1   # seconds between checks for requests that outlived their timeout


class Client(Node):
    def __init__(self, world, kafka, name: str, request_timeout: float, retry_backoff: float):
        super().__init__(world, name)
        self.kafka = kafka
        self.request_timeout = request_timeout
        self.retry_backoff = retry_backoff
        self.broker_ids = sorted(kafka.brokers)
        self._corr = 0
        self._reset_client()
        self.call_later(TICK, self._tick)

    def _reset_client(self):
        self.inflight: dict[int, list] = {}       # corr -> [broker id, sent at, timeout, on_response]
        self.leaders: dict[tuple, tuple[int, int]] = {}   # tp -> (leader id, leader epoch)
        self._metadata_corr = None
        self._metadata_sent = -1.0
        self._next_bootstrap = 0

    def on_restart(self):
        self._reset_client()
        self.call_later(TICK, self._tick)

    # ---- requests ---------------------------------------------------------------------------------------
    def request(self, broker_id: int, message, on_response, timeout=None):
        """Send ``message`` (which has a ``corr`` field set here); ``on_response(response_or_error_code)``."""
        self._corr += 1
        message.corr = self._corr
        message.reply_to = self.name
        self.inflight[self._corr] = [broker_id, self.now, timeout or self.request_timeout, on_response]
        self.world.network.send(self, f"broker-{broker_id}", message)
        return self._corr

    def receive(self, message):
        if type(message) is Disconnected:
            corr = getattr(message.message, "corr", None)
            entry = self.inflight.pop(corr, None) if corr is not None else None
            if entry is not None:
                entry[3](P.NETWORK_EXCEPTION)
            return
        entry = self.inflight.pop(message.corr, None)
        if entry is not None:
            entry[3](message)

    def on_disconnect(self, peer):
        """The broker crashed: every request in flight to it fails with a network error."""
        if not peer.startswith("broker-"):
            return
        bid = int(peer[len("broker-"):])
        lost = [c for c, e in self.inflight.items() if e[0] == bid]
        for corr in lost:
            self.inflight.pop(corr)[3](P.NETWORK_EXCEPTION)

    def _tick(self):
        if self.inflight:
            now = self.now
            expired = [c for c, e in self.inflight.items() if now - e[1] >= e[2]]
            for corr in expired:
                self.inflight.pop(corr)[3](P.REQUEST_TIMED_OUT)
        self.on_tick()
        self.call_later(TICK, self._tick)

    def on_tick(self):
        """Periodic work of a client kind (subclasses)."""

    # ---- metadata ---------------------------------------------------------------------------------------
    def leader_of(self, tp) -> int:
        known = self.leaders.get(tp)
        return known[0] if known else -1

    def refresh_metadata(self):
        """Ask the next broker for metadata, unless a request is already on its way (and not too old)."""
        if self._metadata_corr in self.inflight and self.now - self._metadata_sent < self.retry_backoff * 5:
            return
        bid = self.broker_ids[self._next_bootstrap % len(self.broker_ids)]
        self._next_bootstrap += 1
        self._metadata_sent = self.now
        self._metadata_corr = self.request(bid, P.MetadataRequest(0), self._on_metadata,
                                           timeout=self.request_timeout)

    def _on_metadata(self, response):
        if not isinstance(response, P.MetadataResponse):
            return self.call_later(self.retry_backoff, self.refresh_metadata)
        changed = []
        for tp, (leader, epoch) in response.partitions.items():
            known = self.leaders.get(tp)
            if known is None or epoch > known[1] or (epoch == known[1] and leader != known[0]):
                self.leaders[tp] = (leader, epoch)
                changed.append(tp)
        self.on_metadata(changed)

    def on_metadata(self, changed):
        """New leaders are known for ``changed`` (subclasses)."""
