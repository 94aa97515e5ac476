"""The leader's side of fetching: one FetchRequest for many partitions, held until there is enough to return.

Follows Kafka's ``ReplicaManager.fetchMessages``, ``DelayedFetch`` and ``FetchSession.scala``:

- **Answer now or hold** (``fetchMessages``): a request is answered at once if any of its partitions has an
  error (not the leader, a fenced or unknown leader epoch, offset out of range), a diverging epoch, or if the
  bytes readable across its partitions reach ``min_bytes`` (``replica.fetch.min.bytes`` /
  ``fetch.min.bytes``, 1 by default: one record); otherwise it waits in the purgatory until enough arrives on
  any of its partitions, one of them changes leader, or ``max_wait`` passes (``DelayedFetch.tryComplete``,
  cases A, E, G and H). A follower can read to the log end, a consumer to the high watermark, a read_committed
  consumer to the last stable offset, so appends wake followers' fetches and high-watermark advances wake
  consumers'. Bytes are records x the batches' ``record_size``.
- **Partition checks** stay per partition in ``Replica.check_fetch`` (KIP-320 fencing, KIP-279/KIP-595
  diverging epoch, out of range); each partition is read with ``Log.read``.
- **Limits**: ``partition_max_bytes`` per partition (``max.partition.fetch.bytes``; followers: none) and
  ``max_bytes`` over the whole answer (``replica.fetch.response.max.bytes`` / ``fetch.max.bytes``), in whole
  batches, but always the first batch of the first partition with data (KIP-74); a later partition whose first
  batch does not fit the rest of the budget returns nothing this time.
- **Fetch sessions** (KIP-227) for followers: the leader keeps one session per follower broker (one replica
  fetcher per broker pair; ``FetchSessionCache`` keyed here by follower id) holding each partition's fetch
  offset, epochs and the high watermark and log start it last sent. An incremental request carries only the
  partitions added or whose fetch state changed (``removed`` lists those dropped); the leader still checks every
  partition of the session and updates that follower's state for each (caught-up time, log end offset, ISR
  expansion: ``IncrementalFetchContext`` reads every partition), and the answer carries only the partitions
  with records, a new high watermark or log start, an error or a diverging epoch
  (``CachedPartition.maybeUpdateResponseData``). A crashed leader loses its sessions: the next incremental
  request gets FETCH_SESSION_ID_NOT_FOUND and the fetcher opens a new session with a full request.

Not modelled: consumers' fetch sessions (a consumer sends sessionless full requests and gets every partition
back, as a Java consumer does with ``fetch.session`` disabled), the session cache's size limit and eviction,
topic ids, preferred read replicas (KIP-392), quotas and throttling, and Case F (a fetch offset on an older
segment answers at once).
"""
from __future__ import annotations

from . import protocol as P

INF = float("inf")
_FetchPartition = P.FetchPartition


class SessionPartition:
    """One partition of a fetch as the leader holds it (Kafka's ``CachedPartition``): what the fetcher asked for,
    and, in a session, the high watermark and log start last sent."""

    __slots__ = ("replica", "offset", "leader_epoch", "last_epoch", "checked", "hw_sent", "start_sent", "state",
                 "state_epoch", "refused")

    def __init__(self, replica, want, refused=None):
        self.replica = replica                      # this broker's Replica of the partition, or None
        self.offset, self.leader_epoch, self.last_epoch = want
        self.checked = -2               # the leader epoch under which the checks last passed (-2: check again)
        self.hw_sent = -1
        self.start_sent = -1
        self.state = None               # the leader's FollowerState for the fetching follower, cached
        self.state_epoch = -2
        self.refused = refused          # TOPIC_AUTHORIZATION_FAILED for a consumer that may not READ the topic

    def update(self, want):
        """An incremental request changed what the fetcher wants (a new offset or epoch): check it again."""
        self.offset, self.leader_epoch, self.last_epoch = want
        self.checked = -2


class FetchSession:
    """A follower's fetch session on this leader (Kafka's ``FetchSession``)."""

    __slots__ = ("id", "epoch", "follower", "partitions", "parked")

    def __init__(self, session_id, follower):
        self.id = session_id
        self.epoch = 1                  # the epoch the next incremental request must carry
        self.follower = follower
        self.partitions: dict = {}      # tp -> SessionPartition, in the order the fetcher added them
        self.parked = None              # the DelayedFetch of this session waiting in the purgatory


class DelayedFetch:
    """A fetch held in the purgatory (Kafka's ``DelayedFetch``)."""

    __slots__ = ("manager", "req", "entries", "session", "deadline", "done")

    def __init__(self, manager, req, entries, session, deadline):
        self.manager = manager
        self.req = req
        self.entries = entries
        self.session = session
        self.deadline = deadline
        self.done = False

    def try_complete(self):
        """Something arrived on one of its partitions: answer if the request's ``min_bytes`` are now readable,
        or if a partition changed leader or epoch (``DelayedFetch.tryComplete``)."""
        if self.done:
            return
        req = self.req
        follower = req.replica >= 0
        if follower and req.min_bytes <= 1:
            return self.complete()        # an append to one of its partitions: a record is readable
        committed = req.isolation == "read_committed"
        pmax = req.partition_max_bytes
        acc = 0
        for e in self.entries.values():
            r = e.replica
            if r is None or e.refused is not None:
                continue
            if r.role != "leader" or e.checked != r.leader_epoch:
                return self.complete()
            limit = r.log.end if follower else (r.last_stable_offset if committed else r.hw)
            if e.offset < limit:
                size = (limit - e.offset) * r.log.batches[-1].record_size
                acc += size if pmax is None or size < pmax else pmax
        if acc >= req.min_bytes:
            self.complete()

    def complete(self):
        if self.done:
            return
        self.done = True
        session = self.session
        if session is not None:
            session.parked = None
        else:
            for e in self.entries.values():
                r = e.replica
                if r is not None and self in r.waiting_fetch:
                    r.waiting_fetch.remove(self)
        self.manager.respond(self.req, self.entries, session)


class FetchManager:
    """A broker's fetch handling: its follower sessions and its fetch purgatory (lost in a crash)."""

    def __init__(self, broker):
        self.broker = broker
        self.sessions: dict[int, FetchSession] = {}    # follower broker id -> its session
        self.delayed: list[DelayedFetch] = []

    # ---- a request arrives ----------------------------------------------------------------------------------
    def handle(self, req: P.FetchRequest):
        broker = self.broker
        rid = req.replica
        replicas = broker.replicas
        session = None
        if rid >= 0:
            session = self._session_for(req)
            if session is None:
                return
            entries = session.partitions
        else:
            entries = {}
            denied = self._denied_topics(req) if broker.authorizer is not None else None
            for tp, want in req.partitions.items():
                refused = denied.get(tp[0]) if denied else None
                entries[tp] = SessionPartition(replicas.get(tp), want, refused)
        if self._ready(req, entries, rid):
            return self.respond(req, entries, session)
        deadline = broker._env._now + req.max_wait
        delayed = DelayedFetch(self, req, entries, session, deadline)
        if session is not None:
            session.parked = delayed
        else:
            for e in entries.values():
                if e.replica is not None:
                    e.replica.waiting_fetch.append(delayed)
        self.delayed.append(delayed)
        if deadline < broker.next_expiry:        # Broker.wait_until
            broker.next_expiry = deadline

    def _session_for(self, req):
        """Open, update or refuse the follower's session (``FetchManager.newContext``): a full request
        (epoch 0) opens a new one, closing the old; an incremental one must name the session and its next epoch."""
        broker = self.broker
        rid = req.replica
        replicas = broker.replicas
        epoch = req.session_epoch
        if epoch <= 0:
            old = self.sessions.pop(rid, None)
            if old is not None:
                self._close(old)
            broker.fetch_session_ids += 1
            session = self.sessions[rid] = FetchSession(broker.fetch_session_ids, rid)
            entries = session.partitions
            for tp, want in req.partitions.items():
                r = replicas.get(tp)
                entries[tp] = SessionPartition(r, want)
                if r is not None:
                    r.sessions.append(session)
            return session
        session = self.sessions[rid] if rid in self.sessions else None
        if session is None or session.id != req.session_id or session.epoch != epoch:
            error = P.INVALID_FETCH_SESSION_EPOCH if session is not None and session.id == req.session_id \
                else P.FETCH_SESSION_ID_NOT_FOUND
            broker.send(req.reply_to, P.FetchResponse(req.corr, error))
            return None
        session.epoch = epoch + 1
        entries = session.partitions
        for tp in req.removed:
            e = entries.pop(tp, None)
            if e is not None and e.replica is not None:
                e.replica.sessions.remove(session)
        for tp, want in req.partitions.items():
            if tp in entries:
                e = entries[tp]                 # SessionPartition.update, written out
                e.offset, e.leader_epoch, e.last_epoch = want
                e.checked = -2
            else:
                r = replicas.get(tp)
                entries[tp] = SessionPartition(r, want)
                if r is not None:
                    r.sessions.append(session)
        return session

    def _close(self, session):
        for e in session.partitions.values():
            r = e.replica
            if r is not None and session in r.sessions:
                r.sessions.remove(session)
        if session.parked is not None:
            session.parked.done = True          # superseded: its answer would go to a request given up on
            session.parked = None

    def _denied_topics(self, req) -> dict:
        """KafkaApis.handleFetchRequest: a consumer needs READ on each topic it fetches; the partitions of a topic
        it may not read come back with TOPIC_AUTHORIZATION_FAILED, the others are served."""
        broker = self.broker
        principal = broker.principal_of(req)
        if principal in broker.authorizer.super_users:
            return {}
        denied = {}
        for topic, _p in req.partitions:
            if topic not in denied and not broker.authorizer.authorize(principal, "READ", "TOPIC", topic):
                denied[topic] = P.TOPIC_AUTHORIZATION_FAILED
        return denied

    def _ready(self, req, entries, rid) -> bool:
        """Check every partition as the request arrives, update the follower's state on the leader for each, and
        say whether to answer now (``ReplicaManager.fetchMessages``): an error, a diverging epoch, or
        ``min_bytes`` readable. Partitions whose fetch state has not changed and whose checks passed under the
        current leader epoch cost no call: that is most of a session's partitions at most fetches."""
        now = self.broker._env._now
        ready = req.max_wait <= 0
        committed = req.isolation == "read_committed"
        pmax = req.partition_max_bytes
        acc = 0
        for e in entries.values():
            r = e.replica
            if r is None or e.refused is not None or r.role != "leader":
                ready = True
                continue
            log = r.log
            offset = e.offset
            if e.checked != r.leader_epoch:
                epochs = log.epochs
                if (e.leader_epoch == r.leader_epoch and log.start <= offset <= log.end
                        and (e.last_epoch < 0 or (epochs and e.last_epoch == epochs[-1][0]))):
                    pass                        # Replica.check_fetch's common case, written out: all is well
                else:
                    error, diverging = r.check_fetch(offset, e.leader_epoch, e.last_epoch)
                    if error is not None or diverging is not None:
                        ready = True
                        continue
                e.checked = r.leader_epoch
            if offset < log.start:
                ready = True                    # retention moved the log start past it: OFFSET_OUT_OF_RANGE
                continue
            if rid >= 0:
                limit = log.end
                if e.state_epoch != r.leader_epoch:
                    e.state = r.followers.get(rid)
                    e.state_epoch = r.leader_epoch
                state = e.state
                if state is not None:
                    if offset >= limit and offset == state.leo and (rid in r.isr or r.pending_isr is not None):
                        # Replica.updateFetchState for a follower that stays caught up: written out, this is
                        # what most partitions of a session do at most fetches
                        state.caught_up = state.last_fetch_time = now
                        state.last_fetch_leader_leo = limit
                    else:
                        r._follower_fetched(state, rid, offset, now)
            else:
                limit = r.last_stable_offset if committed else r.hw
            if offset < limit:
                size = (limit - offset) * log.batches[-1].record_size
                acc += size if pmax is None or size < pmax else pmax
        return ready or acc >= req.min_bytes

    # ---- the answer ---------------------------------------------------------------------------------------
    def respond(self, req, entries, session):
        """Read every partition and send the answer (``DelayedFetch.onComplete`` / ``readFromLog``); a session's
        answer leaves out the partitions with nothing new."""
        broker = self.broker
        follower = req.replica >= 0
        committed = req.isolation == "read_committed"
        budget = INF if req.max_bytes is None else req.max_bytes
        pmax = req.partition_max_bytes
        max_records = broker.max_fetch_records
        have_data = False
        out = {}
        for tp, e in entries.items():
            r = e.replica
            offset = e.offset
            if e.refused is not None:
                out[tp] = _FetchPartition(e.refused, fetch_offset=offset)
                continue
            if r is None:
                out[tp] = _FetchPartition(P.NOT_LEADER_OR_FOLLOWER, fetch_offset=offset)
                continue
            log = r.log
            error = diverging = None
            if r.role != "leader":
                error = P.NOT_LEADER_OR_FOLLOWER
            elif e.checked != r.leader_epoch:
                error, diverging = r.check_fetch(offset, e.leader_epoch, e.last_epoch)
                if error is None and diverging is None:
                    e.checked = r.leader_epoch
            elif offset < log.start:
                error = P.OFFSET_OUT_OF_RANGE
            if error is not None or diverging is not None:
                e.hw_sent = -1                  # resent once the error goes (maybeUpdateResponseData)
                out[tp] = _FetchPartition(error, (), r.hw, log.start, log.end, diverging, fetch_offset=offset)
                continue
            hw = r.hw
            if follower:
                limit, lso = log.end, -1
            else:
                producers = r.producers
                lso = r.last_stable_offset if producers.ongoing or producers.completed else hw
                limit = lso if committed else hw
            batches = ()
            aborted = ()
            if offset < limit and budget > 0:
                cap = budget if pmax is None or budget < pmax else pmax
                batches = log.read(offset, limit, max_records, None if cap == INF else cap)
                if batches:
                    first = batches[0]
                    if have_data and first.size > budget:
                        batches = ()            # minOneMessage only for the first partition with data (KIP-74)
                    else:
                        have_data = True
                        budget -= (batches[-1].end - first.base) * first.record_size
                        if committed and r.producers.aborted:
                            aborted = r.producers.aborted_between(offset, batches[-1].end)
            if session is not None:
                if not batches and hw == e.hw_sent and log.start == e.start_sent:
                    continue                    # nothing new: an incremental answer leaves it out
                e.hw_sent = hw
                e.start_sent = log.start
            out[tp] = _FetchPartition(None, batches, hw, log.start, log.end, None, lso, aborted, offset)
        broker.world.network.send(broker, req.reply_to,
                                  P.FetchResponse(req.corr, None, out, session.id if session is not None else 0))

    # ---- the purgatory ------------------------------------------------------------------------------------
    def expire(self, now) -> float:
        """Answer the held fetches whose ``max_wait`` is over; the earliest deadline left (inf: none)."""
        keep = []
        earliest = INF
        for d in self.delayed:
            if d.done:
                continue
            if d.deadline <= now:
                d.complete()
            else:
                keep.append(d)
                if d.deadline < earliest:
                    earliest = d.deadline
        self.delayed = keep
        return earliest
