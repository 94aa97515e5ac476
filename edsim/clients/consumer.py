"""The consumer: fetch assigned partitions from their leaders, hand records to the application in polls.

Follows the Java client's ``AbstractFetch.prepareFetchRequests``: one FetchRequest per leader broker for every
assigned partition it leads that is fetchable (position known, not paused, nothing buffered for it, not backing
off), and at most one in flight per broker (``nodesWithPendingFetchRequests``). The leader answers once
``fetch.min.bytes`` are readable below the high watermark (the last stable offset for read_committed) across
the request's partitions, or after ``fetch.max.wait.ms`` (fetch.py). Each partition of the answer is handled on
its own (``FetchCollector``); the requests are sessionless full fetches (Java consumers use incremental fetch
sessions, KIP-227: not modelled here). A poll returns at most ``max.poll.records``. After a leader change the position is validated against the new
leader's log (KIP-320): if that log diverged, the consumer moves back to where it agrees.
With a group.id, ``subscribe`` joins a consumer group (membership.py) and offsets are committed to it.
"""
from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from ..configs import CONSUMER, Config, ConfigError
from ..kafka import protocol as P
from ..kafka.log import TOMBSTONE
from .client import Client
from .membership import COMMIT_FAILED, CommitFailedException, Membership
from .transactions import KafkaError

COMMIT_UNKNOWN = frozenset({P.COORDINATOR_NOT_AVAILABLE, P.REQUEST_TIMED_OUT, P.NETWORK_EXCEPTION})
RETRY_COMMIT = COMMIT_UNKNOWN | {P.NOT_COORDINATOR}


_NONE = np.empty(0, np.int64)


class OffsetOutOfRange(Exception):
    """auto.offset.reset=none and the position is not in the log (Kafka's OffsetOutOfRangeException)."""


class FatalConsumerError(KafkaError):
    """An error poll() raises that retrying will not fix, such as a JoinGroup refused with
    INVALID_SESSION_TIMEOUT (the Java client's AbstractCoordinator.JoinGroupResponseHandler raises it out of
    poll() as a fatal error; the application must change its configuration)."""


class LogTruncation(OffsetOutOfRange):
    """auto.offset.reset=none and the log was truncated below the position (an unclean election): Java's
    LogTruncationException, an OffsetOutOfRangeException; the application must seek."""


class Record(NamedTuple):
    """One record of a poll, as a service reads it: ``r.key``, ``r.value`` (or unpacked in this order)."""
    topic: str
    partition: int
    offset: int
    value: int
    key: int
    payload: object

    @property
    def tombstone(self) -> bool:
        """A record with a null value: on a compacted topic it deletes its key."""
        return self.payload is TOMBSTONE


class Records:
    """What one poll returned: per partition, numpy arrays of offsets, values and keys (and payloads)."""

    __slots__ = ("parts",)

    def __init__(self, parts):
        self.parts = parts          # list of (tp, offsets, values, keys, payloads or None)

    def __len__(self):
        return sum(len(p[1]) for p in self.parts)

    def __iter__(self):
        """(topic, partition, offset, value, key, payload) per record, for readable services."""
        for tp, offsets, values, keys, payloads in self.parts:
            for i in range(len(offsets)):
                yield Record(tp[0], tp[1], int(offsets[i]), int(values[i]), int(keys[i]),
                             None if payloads is None else payloads[i])


class Consumer(Client):
    def __init__(self, world, kafka, name: str = "consumer-1", config=None):
        self.config = config if isinstance(config, Config) else Config("consumer", CONSUMER, config)
        super().__init__(world, kafka, name, self.config)
        self.principal = self.config["edsim.principal"]  # who the brokers' authorizer sees (acl.py)
        self.max_wait = self.config.seconds("fetch.max.wait.ms")
        self.min_bytes = self.config["fetch.min.bytes"]
        self.max_bytes = self.config["fetch.max.bytes"]
        self.max_poll_records = self.config["max.poll.records"]
        self.max_partition_bytes = self.config["max.partition.fetch.bytes"]
        self.reset_policy = self.config["auto.offset.reset"]
        self.auto_commit = self.config["enable.auto.commit"] and self.config["group.id"] is not None
        self.auto_commit_interval = self.config.seconds("auto.commit.interval.ms")
        self.isolation = self.config["isolation.level"]
        self.txn_op = -1                     # the application's open transaction (consume-transform-produce)
        self.txn_polled = -1                 # the last transaction that records were polled in
        self.assignment: list[tuple] = []
        self.membership = Membership(self, self.config) if self.config["group.id"] else None
        if self.membership is not None:
            kafka.ensure_offsets_topic()     # Kafka creates __consumer_offsets when a group first needs it
        self.closed = False
        self.listener = None                 # a ConsumerRebalanceListener: told of partitions assigned and revoked
        self._reset_consumer()

    def _reset_consumer(self):
        self.positions: dict[tuple, int | None] = {}
        self.buffers: dict[tuple, deque] = {}
        self.fetching: dict[tuple, int] = {}            # tp -> corr of the fetch (or ListOffsets) in flight
        self.fetch_nodes: dict[int, int] = {}           # broker id -> corr of the fetch in flight to it
        self.fetch_epoch: dict[tuple, int] = {}         # leader epoch our position was fetched under
        self.last_epoch: dict[tuple, int] = {}          # epoch of the last record returned
        self.validate: set = set()
        self.high_watermarks: dict[tuple, int] = {}
        self.last_stable: dict[tuple, int] = {}         # the LSO of the last answered fetch
        self.fetched_at: dict[tuple, float] = {}        # time of the last answered fetch
        self.errors: list = []
        self._data = None
        self._blocked: dict[tuple, float] = {}
        self._denied: set = set()                       # partitions refused since their last answered fetch
        self._awaiting_committed: set = set()
        self._next_auto_commit = self.now + self.auto_commit_interval
        self.assignment = []
        self.paused_partitions: set = set()             # pause(): kept assigned, neither fetched nor returned

    def on_crash(self):
        self.world.history.event(self.now, self.name, "crash", detail="consumer process crashed")

    def on_restart(self):
        super().on_restart()
        self._reset_consumer()
        if self.membership is not None:
            self.membership.topics = ()
            self.membership.reset()
        self.listener = None                 # a new process: the application subscribes again

    # ---- assignment -------------------------------------------------------------------------------------
    def assign(self, tps, positions=None):
        """Take these partitions (no group management); positions come from ``positions`` or
        auto.offset.reset."""
        self._forget(self.assignment)          # positions start again: so does what was known of them
        self.assignment, self.positions, self.buffers = [], {}, {}
        self._set_assignment([tuple(tp) for tp in tps])
        if not self.assignment:
            self._record_assignment()
        for tp, offset in (positions or {}).items():
            if tuple(tp) in self.positions:
                self.positions[tuple(tp)] = offset
        self._fetch_if_polling()

    # ---- group membership -------------------------------------------------------------------------------
    def subscribe(self, topics, listener=None):
        """Join the consumer group ``group.id``; the group's leader assigns the partitions of ``topics``.
        ``listener`` (Java's ConsumerRebalanceListener) hears ``on_partitions_revoked(tps)`` and
        ``on_partitions_assigned(tps)`` as the assignment changes."""
        if self.membership is None:
            raise ConfigError("subscribe() needs a group.id in the consumer config (Kafka: InvalidGroupIdException)")
        for topic in topics:
            if topic not in self.kafka.topics:
                raise ConfigError(f"unknown topic {topic!r}; known topics: {', '.join(self.kafka.topics)}")
        self.world.history.event(self.now, self.name, "subscribe", type_="ok", topic=",".join(topics))
        self.listener = listener
        self.membership.subscribe(topics)
        self.membership._progress()

    def join_failed(self, error, request="JoinGroup"):
        """The coordinator refused to let this member join, for good (INVALID_SESSION_TIMEOUT, or
        GROUP_AUTHORIZATION_FAILED: the principal may not READ the group): the refusal is a ``subscribe`` row of
        type ``fail`` in the history, and the next poll() raises it (Java: GroupAuthorizationException). As in the
        Java client the member asks again only when the application polls again."""
        if error == P.INVALID_SESSION_TIMEOUT:
            detail = (f"JoinGroup refused: session.timeout.ms={self.config['session.timeout.ms']} is not within "
                      "the range the brokers allow (group.min.session.timeout.ms .. group.max.session.timeout.ms)")
        elif error == P.GROUP_AUTHORIZATION_FAILED:
            detail = (f"{request} refused: {self.principal} may not "
                      f"{'DESCRIBE' if request == 'FindCoordinator' else 'READ'} group {self.membership.group!r}")
        else:
            detail = f"{request} refused with {error}"
        topics = ",".join(self.membership.topics)
        self.world.history.event(self.now, self.name, "subscribe", type_="fail", topic=topics, error=error,
                                 detail=detail)
        self.errors.append(FatalConsumerError(error, detail))
        self._wake()

    def revoke(self, tps, lost=False):
        """Give partitions up: commit what was consumed first (auto-commit), unless they were already lost."""
        tps = [tp for tp in tps if tp in self.positions]
        if not tps:
            return
        if self.auto_commit and not lost:
            consumed = self.consumed()
            self.commit_async({tp: consumed[tp] for tp in tps if tp in consumed})
        keep = [tp for tp in self.assignment if tp not in tps]
        self._set_assignment(keep)

    def assigned(self, tps, generation):
        """The group gave us ``tps``: new ones start from the group's committed offsets."""
        new = [tp for tp in tps if tp not in self.positions]
        self._set_assignment(list(tps))
        if new:
            self._awaiting_committed.update(new)
            self.membership.fetch_committed(new, lambda offsets, new=new: self._on_committed(new, offsets))
        self._wake()

    def _on_committed(self, tps, offsets):
        if offsets is None:                               # the coordinator moved: ask again
            return self.call_later(self.retry_backoff, lambda: self.membership.fetch_committed(
                tps, lambda o: self._on_committed(tps, o)))
        for tp in tps:
            self._awaiting_committed.discard(tp)
            if tp in self.positions and self.positions[tp] is None and offsets.get(tp, -1) >= 0:
                self.positions[tp] = int(offsets[tp])
                epoch = P.leader_epoch_of(offsets[tp])
                if epoch >= 0:
                    # KIP-320 (ConsumerUtils.refreshCommittedOffsets: seekUnvalidated with the committed epoch):
                    # the first fetch validates the position against the leader's log (_on_fetch).
                    self.last_epoch[tp] = epoch
                    self.validate.add(tp)
        self._fetch_if_polling()

    def _set_assignment(self, tps):
        old = set(self.assignment)
        self._forget(old.difference(tps))
        self.assignment = list(tps)
        self.positions = {tp: self.positions.get(tp) for tp in tps}
        self.buffers = {tp: self.buffers.get(tp, deque()) for tp in tps}
        for tp in list(self.fetching):
            if tp not in self.positions:
                del self.fetching[tp]
        self._awaiting_committed &= set(tps)
        self.paused_partitions &= set(tps)
        if set(tps) != old:
            self._record_assignment()
            if self.listener is not None:
                revoked = [tp for tp in sorted(old) if tp not in self.positions]
                assigned = [tp for tp in tps if tp not in old]
                if revoked:
                    self.listener.on_partitions_revoked(revoked)
                if assigned:
                    self.listener.on_partitions_assigned(assigned)

    def _forget(self, tps):
        """A partition that leaves the assignment takes its state with it; assigned again it starts afresh from
        its new position and that position's epoch (Java's SubscriptionState makes a new TopicPartitionState):
        the epoch of records read under an earlier ownership would make its first fetch look diverged."""
        for tp in tps:
            for state in (self.last_epoch, self.fetch_epoch, self.high_watermarks, self.last_stable,
                          self.fetched_at, self._blocked):
                state.pop(tp, None)
            self.validate.discard(tp)
            self._denied.discard(tp)

    def _record_assignment(self):
        history = self.world.history
        if self.assignment:
            for tp in self.assignment:
                history.event(self.now, self.name, "assign", type_="ok", topic=tp[0], partition=tp[1])
        else:
            history.event(self.now, self.name, "assign", type_="ok", detail="no partitions")

    def group_metadata(self):
        """The group id, generation and member id, for ``Producer.send_offsets_to_transaction`` (KIP-447)."""
        from .transactions import GroupMetadata
        if self.membership is None:
            raise ConfigError("group_metadata() needs a group.id in the consumer config")
        m = self.membership
        return GroupMetadata(m.group, m.generation if m.active else -1, m.member_id if m.active else "")

    def reset_to_committed(self, why="the transaction aborted"):
        """Forget the positions of every assigned partition and start again from the group's committed offsets
        (what an application does after aborting a transaction: its offsets did not advance)."""
        tps = list(self.assignment)
        self.world.history.event(self.now, self.name, "assign", type_="ok",
                                 detail=f"back to the committed offsets ({why})")
        self.positions = {tp: None for tp in tps}
        self.buffers = {tp: deque() for tp in tps}
        self.fetching = {}
        self.last_epoch = {}
        if tps and self.membership is not None:
            self._awaiting_committed.update(tps)
            self.membership.fetch_committed(tps, lambda offsets: self._on_committed(tps, offsets))

    def end_offset(self, tp):
        """The end of what this consumer can read of ``tp``, as of its last fetch: the high watermark, or the
        last stable offset for read_committed; None before the first answer."""
        tp = tuple(tp)
        ends = self.last_stable if self.isolation == "read_committed" else self.high_watermarks
        return ends.get(tp)

    # ---- commits ----------------------------------------------------------------------------------------
    def consumed(self) -> dict:
        """The next offset to consume of every assigned partition, with the leader epoch of the last record
        returned (Java's ``SubscriptionState.allConsumed``, KIP-320): what auto-commit and commitSync() commit."""
        epochs = self.last_epoch
        return {tp: P.OffsetAndEpoch(p, epochs.get(tp, -1)) for tp, p in self.positions.items() if p is not None}

    def commit_async(self, offsets=None, callback=None):
        """OffsetCommit without waiting; ``callback(error)`` when answered."""
        offsets = dict(self.consumed() if offsets is None else offsets)
        if not offsets or self.membership is None:
            return

        def done(error):
            self._record_commit(offsets, error)
            if callback is not None:
                callback(error)

        self.membership.commit(offsets, done)

    def commit_sync(self, offsets=None):
        """SimPy generator: commit and wait, retrying while the coordinator is unreachable or moving (up to
        default.api.timeout.ms, 60 s); raises CommitFailedException if the group has moved on."""
        offsets = dict(self.consumed() if offsets is None else offsets)
        if not offsets or self.membership is None:
            return None
        env = self.world.env
        deadline = env.now + 60.0
        while True:
            event = env.event()
            self.commit_async(offsets, lambda error, e=event: e.succeed(error) if not e.triggered else None)
            error = yield event
            if error in COMMIT_FAILED or error is None or error not in RETRY_COMMIT or env.now >= deadline:
                break
            yield env.timeout(self.retry_backoff)
        if self.paused:
            yield self.when_running()
        if error in P.AUTHORIZATION_FAILED:
            raise FatalConsumerError(error, f"commit refused: {self.principal} may not commit to group "
                                            f"{self.membership.group!r} or read one of its topics")
        if error in COMMIT_FAILED:
            raise CommitFailedException(f"commit failed with {error}: the group rebalanced, or this member was "
                                        "removed from it (session.timeout.ms or max.poll.interval.ms)")
        return error

    def _record_commit(self, offsets, error):
        type_ = "ok" if error is None else ("info" if error in COMMIT_UNKNOWN else "fail")
        by_topic: dict[str, list] = {}
        for (topic, partition), offset in offsets.items():
            by_topic.setdefault(topic, []).append((partition, offset))
        for topic, pairs in by_topic.items():
            self.world.history.commits(self.now, self.name, type_, topic, [p for p, _ in pairs],
                                       [o for _, o in pairs], error or "")

    def close(self):
        """Leave the group at once (a dynamic member's clean shutdown triggers a rebalance right away); the
        consumer returns nothing after this."""
        if self.auto_commit:
            self.commit_async()
        if self.membership is not None:
            self.membership.leave()
            self.membership.topics = ()
        self._set_assignment([])
        self.closed = True

    # ---- the application's side -------------------------------------------------------------------------
    def poll(self, timeout: float):
        """SimPy generator: wait up to ``timeout`` for records; returns a Records (maybe empty)."""
        env = self.world.env
        if self.paused:
            yield self.when_running()                   # the application stalls with its process
        if self.closed:
            yield env.timeout(timeout)
            return Records([])
        if self.membership is not None:
            self.membership.on_poll()
            if self.auto_commit and self.now >= self._next_auto_commit:
                self._next_auto_commit = self.now + self.auto_commit_interval
                if self.membership.state == "stable":
                    self.commit_async()
        if not self._buffered():
            # Java's pollForFetches: records already buffered are returned at once; fetches are sent only when
            # there are none (and after records are handed over: _take), so a partition drained by this poll is
            # in the next fetch to its leader
            self._fetch_all()
            self._data = env.event()
            yield env.any_of([self._data, env.timeout(timeout)])
            self._data = None
        if self.paused:
            yield self.when_running()                   # a stalled process returns from no call until it runs
        if self.errors:
            error, self.errors = self.errors[0], []
            raise error
        return self._take()

    @property
    def waiting_in_poll(self) -> bool:
        """Is the application blocked in poll() with nothing buffered, and not holding records in an open
        transaction? Then it has processed, for good, all it was given (consume-transform-produce processes a
        record when its transaction commits)."""
        return self._data is not None and (self.txn_op == -1 or self.txn_polled != self.txn_op)

    def _buffered(self):
        paused = self.paused_partitions
        return any(self.buffers.get(tp) for tp in self.assignment if tp not in paused)

    def _take(self):
        if not self.up:
            return Records([])
        room = self.max_poll_records
        parts = []
        history = self.world.history
        op = history.new_op()
        now = self.now
        paused = self.paused_partitions
        for tp in self.assignment:
            if tp in paused:
                continue
            buffer = self.buffers.get(tp)
            while buffer and room > 0:
                offsets, values, keys, payloads, epoch, after = buffer[0]
                if len(offsets) > room:
                    buffer[0] = (offsets[room:], values[room:], keys[room:],
                                 None if payloads is None else payloads[room:], epoch, after)
                    offsets, values, keys = offsets[:room], values[:room], keys[:room]
                    payloads = None if payloads is None else payloads[:room]
                    after = int(offsets[-1]) + 1
                else:
                    buffer.popleft()
                self.positions[tp] = after
                self.last_epoch[tp] = epoch
                if not len(offsets):
                    continue                      # markers or aborted records: the position moves past them
                room -= len(offsets)
                parts.append((tp, offsets, values, keys, payloads))
                history.polls(now, self.name, tp[0], tp[1], values, keys, offsets, op, self.txn_op)
        if parts and self.txn_op != -1:
            self.txn_polled = self.txn_op                 # records now ride on the open transaction
        self._fetch_all()
        return Records(parts)

    def position(self, tp) -> int | None:
        return self.positions.get(tuple(tp))

    def pause_partitions(self, tps):
        """Stop fetching and returning these assigned partitions (Java's ``pause``; ``pause()`` here stalls the
        whole process): they stay assigned, positions kept (Kafka Streams pauses a partition while its state is
        restored)."""
        self.paused_partitions |= {tuple(tp) for tp in tps if tuple(tp) in self.positions}

    def resume_partitions(self, tps):
        """Undo ``pause_partitions`` (Java's ``resume``)."""
        self.paused_partitions -= {tuple(tp) for tp in tps}
        self._fetch_if_polling()
        if self._buffered():
            self._wake()

    def seek(self, tp, offset: int):
        tp = tuple(tp)
        self.positions[tp] = offset
        self.buffers[tp] = deque()
        self.fetching.pop(tp, None)
        self._fetch_if_polling()

    # ---- fetching ---------------------------------------------------------------------------------------
    def on_topic_errors(self, errors):
        """The metadata refused topics this consumer reads (TOPIC_AUTHORIZATION_FAILED): poll() raises."""
        for tp in self.assignment:
            if tp[0] in errors:
                self._refused(tp, errors[tp[0]], "DESCRIBE")

    def _refused(self, tp, error, operation):
        """A request for ``tp`` was denied (TOPIC_AUTHORIZATION_FAILED): an ``assign`` row of type ``fail`` the
        first time until a fetch succeeds again, and poll() raises it (Java's Fetcher throws
        TopicAuthorizationException out of poll()). The partition is fetched again after retry.backoff.ms."""
        if tp not in self._denied:
            self._denied.add(tp)
            self.world.history.event(self.now, self.name, "assign", type_="fail", topic=tp[0], partition=tp[1],
                                     error=error, detail=f"{self.principal} may not {operation} topic {tp[0]!r}")
        if not any(isinstance(e, FatalConsumerError) and e.code == error for e in self.errors):
            self.errors.append(FatalConsumerError(error, f"{self.principal} may not {operation} topic {tp[0]!r}"))
        self._block(tp)
        self._wake()

    def on_metadata(self, changed):
        for tp in changed:
            self._blocked.pop(tp, None)
            if tp in self.positions and tp in self.last_epoch and self.leaders[tp][1] > self.fetch_epoch.get(tp, -1):
                self.validate.add(tp)
        if self.membership is not None:
            self.membership.metadata_changed()
        self._fetch_if_polling()

    def on_tick(self):
        if self.up:
            if self.membership is not None:
                self.membership.on_tick()
            self._fetch_if_polling()

    def on_connected(self, bid):
        self._fetch_if_polling()

    def _fetch_if_polling(self):
        """Java's classic consumer sends fetches only from ``poll()``: while the application waits in it, an
        answer, a tick, new metadata or a connection lead to the next request; while it processes, nothing is
        fetched until it polls again (ClassicKafkaConsumer.pollForFetches)."""
        if self._data is not None:
            self._fetch_all()

    def _fetch_all(self):
        """Send what can be sent (``AbstractFetch.prepareFetchRequests``): a ListOffsets for each fetchable
        partition without a position, and one FetchRequest per leader broker, without one in flight, for the
        fetchable partitions it leads."""
        paused = self.paused_partitions
        buffers = self.buffers
        blocked = self._blocked
        fetching = self.fetching
        leaders = self.leaders
        positions = self.positions
        now = self._env._now
        requests = None
        for tp in self.assignment:
            if tp in fetching or (tp in buffers and buffers[tp]) or tp in paused \
                    or (tp in blocked and blocked[tp] > now) or tp in self._awaiting_committed:
                continue
            known = leaders[tp] if tp in leaders else None
            leader = known[0] if known else -1
            if leader < 0:
                self._block(tp)
                self.refresh_metadata()
                continue
            position = positions[tp] if tp in positions else None
            if position is None:
                self._list_offsets(tp, leader)
                continue
            if leader in self.fetch_nodes:
                continue                        # one fetch in flight per broker
            if requests is None:
                requests = {}
            if leader in requests:
                want = requests[leader]
            else:
                want = requests[leader] = {}
            self.fetch_epoch[tp] = known[1]
            want[tp] = (position, known[1], self.last_epoch.get(tp, -1) if tp in self.validate else -1)
        if requests:
            for leader, want in requests.items():
                self._fetch(leader, want)

    def _fetch(self, leader, want):
        """One FetchRequest to ``leader`` for the partitions of ``want`` (tp -> offset, epochs)."""
        if not self.ready(leader):
            return
        token = []
        corr = self.request(
            leader, P.FetchRequest(0, -1, want, self.max_wait, self.min_bytes, self.max_bytes,
                                   self.max_partition_bytes, self.isolation),
            lambda r, t=token: self._on_fetch(leader, want, r, t[0]),
            timeout=self.request_timeout + self.max_wait)
        token.append(corr)
        self.fetch_nodes[leader] = corr
        fetching = self.fetching
        for tp in want:
            fetching[tp] = corr

    def _list_offsets(self, tp, leader):
        if not self.ready(leader):
            return
        if self.reset_policy == "none":
            self.errors.append(OffsetOutOfRange(f"no committed offset for {tp[0]}-{tp[1]} and "
                                                "auto.offset.reset=none"))
            return self._wake()
        which = "earliest" if self.reset_policy == "earliest" else "latest"
        token = []
        self.fetching[tp] = self.request(leader, P.ListOffsetsRequest(0, tp, which, isolation=self.isolation),
                                         lambda r, tp=tp, t=token: self._on_list_offsets(tp, r, t[0]))
        token.append(self.fetching[tp])

    def _block(self, tp):
        self._blocked[tp] = self.now + self.retry_backoff

    def _stale(self, tp, corr) -> bool:
        """An answer to a request this consumer has since given up on (the partition was revoked and assigned
        again, or the position reset): its records must not be buffered a second time."""
        if self.fetching.get(tp) != corr:
            return True
        del self.fetching[tp]
        return False

    def _on_list_offsets(self, tp, response, corr):
        if self._stale(tp, corr):
            return
        if isinstance(response, str) or response.error is not None:
            if not isinstance(response, str) and response.error in P.AUTHORIZATION_FAILED:
                return self._refused(tp, response.error, "DESCRIBE")
            self._block(tp)
            return self.refresh_metadata()
        if tp in self.positions and self.positions[tp] is None:
            self.positions[tp] = response.offset
        self._fetch_if_polling()

    def _on_fetch(self, leader, want, response, corr):
        """The answer to one FetchRequest: each partition on its own (``FetchCollector``), then fetch again."""
        nodes = self.fetch_nodes
        if leader in nodes and nodes[leader] == corr:
            del nodes[leader]
        failed = response.__class__ is str
        parts = None if failed else response.partitions
        fetching = self.fetching
        got = False
        for tp, (position, _epoch, _last) in want.items():
            if tp not in fetching or fetching[tp] != corr:
                continue                        # given up on: revoked and reassigned, or sought, meanwhile
            del fetching[tp]
            if failed:
                data = response
            elif tp in parts:
                data = parts[tp]
            else:
                continue
            if self._on_partition(tp, position, data):
                got = True
        if got:
            self._wake()            # the application's poll takes them and fetches again (KafkaConsumer.poll)
        else:
            self._fetch_if_polling()

    def _on_partition(self, tp, position, data) -> bool:
        """One partition of a fetch answer (``data``: a FetchPartition, or the request's error code); True if
        records for the application were buffered."""
        if tp not in self.positions or self.positions[tp] != position:
            return                              # reassigned or moved while the fetch was out
        error = data if data.__class__ is str else data.error
        if data.__class__ is not str and data.diverging_epoch is not None:
            return self._diverged(tp, position, *data.diverging_epoch)
        if error == P.OFFSET_OUT_OF_RANGE:
            if self.reset_policy == "none":
                self.errors.append(OffsetOutOfRange(f"offset {position} is out of range for {tp[0]}-{tp[1]}"))
                return self._wake()
            self.positions[tp] = data.log_start if self.reset_policy == "earliest" else data.high_watermark
            return
        if error is not None:
            if error in P.AUTHORIZATION_FAILED:
                return self._refused(tp, error, "READ")
            self.refresh_metadata()
            self._block(tp)
            return
        if self._denied:
            self._denied.discard(tp)
        self.validate.discard(tp)
        self.high_watermarks[tp] = data.high_watermark
        self.last_stable[tp] = data.last_stable_offset
        self.fetched_at[tp] = self.now
        if not data.batches:
            return False
        got = False
        buffer = self.buffers[tp]
        # Java's CompletedFetch: an aborted transaction's records are dropped from its first offset until its
        # ABORT marker; markers (control batches) never reach the application.
        aborted = sorted(data.aborted, key=lambda a: a[1]) if data.aborted else ()
        aborted_pids, k = set(), 0
        for batch in data.batches:
            while k < len(aborted) and aborted[k][1] < batch.end:
                aborted_pids.add(aborted[k][0])
                k += 1
            if batch.end <= position:
                continue
            skip = batch.control is not None or (batch.transactional and batch.producer_id in aborted_pids)
            if batch.control == "ABORT":
                aborted_pids.discard(batch.producer_id)
            if skip:
                if buffer:
                    buffer.append((_NONE, _NONE, _NONE, None, batch.epoch, batch.end))
                else:
                    self.positions[tp] = batch.end
                position = batch.end
                continue
            if batch.base < position:
                batch = batch.tail(position)
            n = len(batch)
            offsets = np.arange(batch.base, batch.base + n, dtype=np.int64)
            buffer.append((offsets, batch.values, batch.keys, batch.payloads, batch.epoch, batch.end))
            position = batch.end               # a compacted log has gaps: the next batch may start later
            got = True
        return got

    def _diverged(self, tp, position, epoch, end):
        """KIP-320: the leader's log diverges from what this position was read from (an unclean election
        truncated it, after we read it or after the group committed it). As Java's
        ``SubscriptionState.maybeCompleteValidation``: with a reset policy, go back to the end of the last common
        epoch (the divergence point) whatever the policy says, or apply the policy if the leader knows no such
        epoch; with auto.offset.reset=none, raise LogTruncation from poll() and leave the position as it is.
        (The caller fetches again.)"""
        self.validate.discard(tp)
        if 0 <= end and end >= position:
            return                                         # nothing we hold was truncated
        if self.reset_policy == "none":
            self.validate.add(tp)                          # still unvalidated: the application must seek
            why = (f"the log of {tp[0]}-{tp[1]} was truncated below offset {position}"
                   + (f": it diverges at {end}" if end >= 0 else ""))
            if not any(isinstance(e, LogTruncation) for e in self.errors):
                self.world.history.event(self.now, self.name, "assign", type_="fail", topic=tp[0],
                                         partition=tp[1], offset=position, error="LOG_TRUNCATION",
                                         detail=why + " and auto.offset.reset=none")
            self.errors.append(LogTruncation(why))
            self._block(tp)
            return self._wake()
        if end < 0:
            self.positions[tp] = None                      # no common epoch: auto.offset.reset
            self.last_epoch.pop(tp, None)
        else:
            self.positions[tp] = end
            self.last_epoch[tp] = epoch

    def _wake(self):
        if self._data is not None and not self._data.triggered:
            self._data.succeed()
