"""What producers and consumers share: requests with correlation ids and timeouts, and cluster metadata.

Clients know brokers by id. Metadata (the leader and leader epoch of each partition) is asked of one broker at a
time, in turn, and a newer leader epoch always wins over an older one, so a stale broker cannot move a client
back (KIP-320). A client asks when something fails and, failing that, every ``metadata.max.age.ms`` (5 minutes
by default): that is how late it learns that a topic gained partitions.
"""
from __future__ import annotations

from ..configs import CLIENT_TICK_MS
from ..engine import Node
from ..engine.network import Disconnected
from ..kafka import protocol as P

TICK = CLIENT_TICK_MS / 1000   # seconds between checks for requests that outlived their timeout
CONNECTION_SETUP_TIMEOUT = 10.0  # socket.connection.setup.timeout.ms


class Client(Node):
    kind = "client"

    def __init__(self, world, kafka, name: str, config):
        super().__init__(world, name)
        self.kafka = kafka
        self.request_timeout = config.seconds("request.timeout.ms")
        self.retry_backoff = config.seconds("retry.backoff.ms")
        self.metadata_max_age = config.seconds("metadata.max.age.ms")
        # reconnect.backoff.ms doubling up to reconnect.backoff.max.ms (Java's ClusterConnectionStates)
        self.reconnect_backoff = config.seconds("reconnect.backoff.ms")
        self.reconnect_backoff_max = config.seconds("reconnect.backoff.max.ms")
        self.broker_ids = sorted(kafka.brokers)
        self._node_rng = world.rng(f"{name}/least-loaded")
        self._corr = 0
        self._reset_client()
        self.call_later(TICK, self._tick)

    def _reset_client(self):
        self.inflight: dict[int, list] = {}       # corr -> [broker id, sent at, timeout, on_response]
        self.leaders: dict[tuple, tuple[int, int]] = {}   # tp -> (leader id, leader epoch)
        self._metadata_corr = None
        self._metadata_sent = -1.0
        self._metadata_deferred = False
        self._metadata_fresh = self.now           # when metadata last arrived: metadata.max.age.ms runs from it
        self.partition_counts: dict[str, int] = {}   # topic -> partitions, as this client's metadata says
        self.topic_errors: dict[str, str] = {}      # topic -> error of the last metadata (TOPIC_AUTHORIZATION_FAILED)
        self.connected: set[int] = set()          # brokers with an open connection
        self._connecting: set[int] = set()
        self._reconnect_at: dict[int, float] = {}
        self._reconnect_backoff: dict[int, float] = {}
        self._attempted: dict[int, float] = {}    # when a connection to each broker was last tried

    def on_restart(self):
        self._reset_client()
        self.call_later(TICK, self._tick)

    # ---- requests ---------------------------------------------------------------------------------------
    def request(self, broker_id: int, message, on_response, timeout=None):
        """Send ``message`` (which has a ``corr`` field set here); ``on_response(response_or_error_code)``."""
        self._corr += 1
        message.corr = self._corr
        message.reply_to = self.name
        self.inflight[self._corr] = [broker_id, self._env._now, timeout or self.request_timeout, on_response]
        self.world.network.send(self, f"broker-{broker_id}", message)
        return self._corr

    def receive(self, message):
        if type(message) is Disconnected:
            self.on_disconnect(message.peer)
            corr = getattr(message.message, "corr", None)
            entry = self.inflight.pop(corr, None) if corr is not None else None
            if entry is not None:
                entry[3](P.NETWORK_EXCEPTION)
            return
        entry = self.inflight.pop(message.corr, None)
        if entry is not None:
            entry[3](message)

    def on_disconnect(self, peer):
        """The connection to a broker broke (it crashed, or refused us): requests in flight on it fail."""
        if not peer.startswith("broker-"):
            return
        bid = int(peer[len("broker-"):])
        self._lose_connection(bid)
        lost = [c for c, e in self.inflight.items() if e[0] == bid]
        for corr in lost:
            self.inflight.pop(corr)[3](P.NETWORK_EXCEPTION)
        self.refresh_metadata()            # the Java NetworkClient asks for metadata after a disconnect

    # ---- connections ------------------------------------------------------------------------------------
    def ready(self, bid: int) -> bool:
        """Is there a connection to ``bid``? If not, start one; the caller tries again later."""
        if bid in self.connected:
            return True
        if bid not in self._connecting and self.now >= self._reconnect_at.get(bid, 0.0):
            self._connecting.add(bid)
            self._attempted[bid] = self.now
            self.world.network.reconnect(self.name, f"broker-{bid}")
            self.request(bid, P.ApiVersionsRequest(0), lambda r, bid=bid: self._on_connect(bid, r),
                         timeout=CONNECTION_SETUP_TIMEOUT)
        return False

    def connection_failed(self, bid: int) -> bool:
        """Did the last attempt to connect to ``bid`` fail (it is backing off), as NetworkClient.connectionFailed
        says? Not while a connection is up or being made."""
        return (bid not in self.connected and bid not in self._connecting
                and self.now < self._reconnect_at.get(bid, 0.0))

    def _on_connect(self, bid, response):
        if isinstance(response, P.ApiVersionsResponse):
            self._connecting.discard(bid)
            self.connected.add(bid)
            self._reconnect_backoff.pop(bid, None)
            self.on_connected(bid)
        elif bid in self._connecting:          # (a disconnect or a timeout may have closed it already)
            self._lose_connection(bid)

    def _lose_connection(self, bid):
        """The connection to ``bid`` failed or was closed: one step of the reconnect backoff."""
        self.connected.discard(bid)
        self._connecting.discard(bid)
        previous = self._reconnect_backoff.get(bid)
        backoff = min(previous * 2 if previous is not None else self.reconnect_backoff, self.reconnect_backoff_max)
        self._reconnect_backoff[bid] = backoff
        self._reconnect_at[bid] = self.now + backoff

    def on_connected(self, bid):
        """A connection to ``bid`` is up (subclasses)."""

    def _tick(self):
        if self.inflight:
            now = self.now
            expired = [c for c, e in self.inflight.items() if now - e[1] >= e[2]]
            for corr in expired:
                entry = self.inflight.pop(corr, None)
                if entry is None:
                    continue
                # The Java client closes a connection whose request timed out: the rest in flight on it fail too.
                bid = entry[0]
                self._lose_connection(bid)
                entry[3](P.REQUEST_TIMED_OUT)
                for other in [c for c, e in self.inflight.items() if e[0] == bid]:
                    self.inflight.pop(other)[3](P.NETWORK_EXCEPTION)
        if self.now - self._metadata_fresh >= self.metadata_max_age:
            self.refresh_metadata()                # metadata.max.age.ms: ask even though nothing failed
        self.on_tick()
        self.call_later(TICK, self._tick)

    def on_tick(self):
        """Periodic work of a client kind (subclasses)."""

    # ---- metadata ---------------------------------------------------------------------------------------
    def leader_of(self, tp) -> int:
        known = self.leaders.get(tp)
        return known[0] if known else -1

    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has, as this client knows it: learnt on first use (Java's send() and
        subscribe() wait for the topic's metadata) and then only from metadata responses, so partitions added
        later reach the client at its next metadata refresh, at the latest ``metadata.max.age.ms`` on."""
        n = self.partition_counts.get(topic)
        if n is None:
            n = self.partition_counts[topic] = self.kafka.topics[topic]["partitions"]
        return n

    def least_loaded_node(self):
        """Where a request that any broker can answer goes (metadata, FindCoordinator, InitProducerId): Java's
        ``NetworkClient.leastLoadedNode``. From a random start, the first connected broker with nothing in flight,
        else the connected one with least in flight, else one being connected to, else one whose reconnect
        backoff has passed (the longest untried first); None when every broker is backing off."""
        ids = self.broker_ids
        start = self._node_rng.randrange(len(ids))
        ready = connecting = can_connect = None
        fewest = None
        for i in range(len(ids)):
            bid = ids[(start + i) % len(ids)]
            if bid in self.connected:
                load = sum(1 for e in self.inflight.values() if e[0] == bid)
                if load == 0:
                    return bid
                if fewest is None or load < fewest:
                    ready, fewest = bid, load
            elif bid in self._connecting:
                connecting = bid
            elif self.now >= self._reconnect_at.get(bid, 0.0):
                if can_connect is None or self._attempted.get(bid, -1.0) < self._attempted.get(can_connect, -1.0):
                    can_connect = bid
        for bid in (ready, connecting, can_connect):
            if bid is not None:
                return bid
        return None

    def refresh_metadata(self):
        """Ask the least-loaded broker for metadata: one request at a time, at most one per retry.backoff.ms."""
        if self._metadata_corr in self.inflight:
            return
        wait = self._metadata_sent + self.retry_backoff - self.now
        bid = self.least_loaded_node() if wait <= 0 else None
        if bid is None:
            if not self._metadata_deferred:
                self._metadata_deferred = True
                self.call_later(max(wait, self.retry_backoff), self._deferred_refresh)
            return
        self._metadata_sent = self.now
        self._metadata_corr = self.request(bid, P.MetadataRequest(0), self._on_metadata)

    def _deferred_refresh(self):
        self._metadata_deferred = False
        self.refresh_metadata()

    def _on_metadata(self, response):
        if not isinstance(response, P.MetadataResponse):
            return self.refresh_metadata()
        self._metadata_fresh = self.now
        changed = []
        counts = self.partition_counts
        for tp, (leader, epoch) in response.partitions.items():
            known = self.leaders.get(tp)
            if known is None or epoch > known[1] or (epoch == known[1] and leader != known[0]):
                self.leaders[tp] = (leader, epoch)
                changed.append(tp)
            topic = tp[0]
            if topic in counts and tp[1] >= counts[topic]:
                counts[topic] = tp[1] + 1          # the topic gained partitions (Kafka only adds them)
        if response.errors or self.topic_errors:
            self.topic_errors = dict(response.errors)
            if response.errors:
                self.on_topic_errors(self.topic_errors)
        self.on_metadata(changed)

    def on_metadata(self, changed):
        """New leaders are known for ``changed`` (subclasses)."""

    def on_topic_errors(self, errors):
        """The metadata refused some topics (``{topic: error}``, e.g. TOPIC_AUTHORIZATION_FAILED) (subclasses)."""
