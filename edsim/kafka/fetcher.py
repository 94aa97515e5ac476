"""A broker's replica fetcher: one per leader broker it follows partitions of, fetching all of them at once.

Follows Kafka's ``AbstractFetcherThread`` / ``ReplicaFetcherThread`` and the ``FetchSessionHandler`` they use
(KIP-227), with ``num.replica.fetchers`` = 1 (Kafka's default): the broker keeps one fetcher per leader
(``AbstractFetcherManager.addFetcherForPartitions``), and a follower replica moves to the fetcher of its new
leader when leadership changes (``Replica._become_follower`` / ``_become_leader``; a crash forgets them all).

- **One request in flight** per fetcher, covering its partitions: each partition's fetch offset (its log end),
  current leader epoch and last fetched epoch (``Replica.fetch_state``). When the answer comes back the next
  request goes at once (the leader holds it until there is something new: fetch.py).
- **Fetch session**: the first request is a full one (session epoch 0) and opens a session on the leader;
  the following ones are incremental: they carry only the partitions added or whose fetch state changed since
  the last request (records appended, a truncation, a new leader epoch) and list the ones removed. The answer
  carries only partitions with something new. A request-level error (the leader restarted and lost the
  session) or a failed request starts a new session with a full request.
- **Per partition** (``processFetchRequest``): ``Replica.handle_fetched`` appends, truncates on a diverging
  epoch (KIP-279/KIP-320), handles OFFSET_OUT_OF_RANGE, and follows the high watermark. A partition whose answer
  is an error is left out of the requests for ``replica.fetch.backoff.ms`` (``delayPartitions``: it leaves the
  session and rejoins it after) while the others keep replicating. An answer to a fetch state the partition has
  since left (truncated meanwhile) is ignored, as the thread checks the fetch offset.
- **Request failures**: a connection reset (the leader crashed) backs off the whole fetcher for
  ``replica.fetch.backoff.ms``; an answer not back within ``replica.socket.timeout.ms`` (plus the wait the
  leader may hold it) is sent again on a new connection (Broker._tick). A request sent while a link is
  partitioned is held by the network and delivered after the partition heals, as TCP retransmits it.

Not modelled: more than one fetcher per leader (``num.replica.fetchers``), the fetcher's own truncation phase
before fetching (OffsetsForLeaderEpoch: followers truncate through the fetch's diverging epoch instead, as Kafka
does since 2.7 with IBP >= 2.7), throttling, and ``replica.fetch.max.bytes`` per partition.
"""
from __future__ import annotations

from . import protocol as P
from .replica import FAILED, FETCHED


class ReplicaFetcher:
    def __init__(self, broker, leader: int):
        self.broker = broker
        self.leader = leader
        self.leader_name = f"broker-{leader}"
        self.partitions: dict = {}      # tp -> follower Replica (AbstractFetcherThread.partitionStates)
        self.delayed: dict = {}         # tp -> when it may be fetched again after an error (delayPartitions)
        self.dirty: dict = {}           # tp -> None: fetch state changed since the last request (insertion order)
        self.in_session: dict = {}      # tp -> None: in the leader's session
        self.removed: dict = {}         # tp -> None: to be dropped from the leader's session by the next request
        self.session_id = 0
        self.session_epoch = 0          # 0: the next request is a full one and opens a new session
        self.corr = None                # the request in flight
        self.sent_at = 0.0
        self.backing_off = False        # after a failed request, for replica.fetch.backoff.ms
        self.waking = False             # a send is scheduled (partitions added, or a partition's delay ends)

    # ---- partitions ---------------------------------------------------------------------------------------
    def add(self, replica):
        """Fetch ``replica`` from now on (``addPartitions``); the next request carries it. Partitions added by
        one metadata update go in one request."""
        tp = replica.tp
        self.partitions[tp] = replica
        replica.fetcher = self
        self.dirty[tp] = None
        self.delayed.pop(tp, None)
        self.removed.pop(tp, None)
        self._wake_soon(0.0)

    def remove(self, replica):
        """Stop fetching ``replica`` (``removePartitions``): the next request drops it from the session."""
        tp = replica.tp
        if self.partitions.pop(tp, None) is None:
            return
        replica.fetcher = None
        self.dirty.pop(tp, None)
        self.delayed.pop(tp, None)
        if tp in self.in_session:
            del self.in_session[tp]
            self.removed[tp] = None

    def delay(self, tp):
        """A partition error: leave ``tp`` out for replica.fetch.backoff.ms (``delayPartitions``)."""
        broker = self.broker
        self.delayed[tp] = broker._env._now + broker.fetch_backoff
        self.dirty.pop(tp, None)
        if tp in self.in_session:
            del self.in_session[tp]
            self.removed[tp] = None

    # ---- requests -----------------------------------------------------------------------------------------
    def _wake_soon(self, delay):
        if not self.waking:
            self.waking = True
            self.broker.call_later(delay, self._wake)

    def _wake(self):
        self.waking = False
        if self.corr is None and not self.backing_off:
            self.send()

    def send(self):
        """Build and send the next request (``ReplicaFetcherThread.buildFetch``), or wait if there is nothing to
        fetch."""
        broker = self.broker
        now = broker._env._now
        delayed = self.delayed
        partitions = self.partitions
        if delayed:
            for tp, until in list(delayed.items()):
                if until <= now:
                    del delayed[tp]
                    self.dirty[tp] = None
        want = {}
        legacy = broker.legacy_truncation
        if self.session_epoch == 0:
            for tp, replica in partitions.items():
                if tp not in delayed:
                    want[tp] = replica.fetch_state()
            self.in_session = dict.fromkeys(want)
            removed = ()
        else:
            in_session = self.in_session
            for tp in self.dirty:
                # Replica.fetch_state, written out: (log end, current leader epoch, last fetched epoch)
                replica = partitions[tp]
                log = replica.log
                epochs = log.epochs
                want[tp] = (log.end, replica.leader_epoch, -1 if legacy or not epochs else epochs[-1][0])
                in_session[tp] = None
            removed = ()
            if self.removed:
                removed = tuple(self.removed)
                self.removed = {}
        if self.dirty:
            self.dirty = {}
        if not self.in_session and not removed:
            if delayed:                                   # every partition is backing off: wait for the first
                self._wake_soon(max(min(delayed.values()) - now, 0.0))
            return
        broker._corr += 1                               # Broker.next_corr
        self.corr = corr = broker._corr
        self.sent_at = now
        broker.world.network.send(broker, self.leader_name, P.FetchRequest(
            corr, broker.id, want, broker.fetch_wait, broker.fetch_min_bytes, broker.fetch_response_max_bytes,
            None, "read_uncommitted", self.session_id, self.session_epoch, removed, broker.name))

    def handle_response(self, resp: P.FetchResponse):
        if resp.corr != self.corr:
            return                      # an answer to a request given up on
        self.corr = None
        if resp.error is not None:      # FETCH_SESSION_ID_NOT_FOUND / INVALID_FETCH_SESSION_EPOCH: start again
            self.session_epoch = 0
            return self.send()
        if self.session_epoch == 0:
            self.session_id = resp.session_id
        self.session_epoch += 1
        partitions = self.partitions
        dirty = self.dirty
        for tp, data in resp.partitions.items():
            if tp not in partitions:
                continue                # removed while the request was out
            replica = partitions[tp]
            if data.fetch_offset != replica.log.end:
                continue                # truncated while the request was out
            outcome = replica.handle_fetched(data)
            if outcome == FETCHED:
                dirty[tp] = None
            elif outcome == FAILED and tp not in dirty:   # (re-added with a new epoch meanwhile: fetch again)
                self.delay(tp)
        self.send()

    def failed(self):
        """The request was lost with the connection (the leader crashed): every partition backs off for
        replica.fetch.backoff.ms (``processFetchRequest`` puts them all in ``partitionsWithError``), and the next
        request opens a new session (``FetchSessionHandler.handleError``)."""
        if self.corr is None:
            return
        self.corr = None
        self.session_epoch = 0
        self.backing_off = True
        self.broker.call_later(self.broker.fetch_backoff, self._retry)

    def _retry(self):
        self.backing_off = False
        if self.corr is None:
            self.send()

    def timed_out(self):
        """No answer within replica.socket.timeout.ms: give the request up and ask again, on a new connection."""
        broker = self.broker
        broker.world.network.reconnect(broker.name, self.leader_name)
        self.corr = None
        self.session_epoch = 0
        if not self.backing_off:
            self.send()
