"""A consumer's side of the group protocol (the Java client's ConsumerCoordinator).

Find the coordinator; join (the leader member runs the assignor); sync; heartbeat every heartbeat.interval.ms
from a background "thread" that keeps going while the application processes; rejoin when the coordinator
answers REBALANCE_IN_PROGRESS. With the eager protocol a member gives up all its partitions before rejoining
(committing first when auto-commit is on); with the cooperative one (KIP-429) it keeps them and gives up only
those the new assignment moves, then rejoins once more. If the application does not call poll() within
max.poll.interval.ms, the member leaves the group, as the Java client does.

Looking for the coordinator goes one request at a time and backs off exponentially between failures, from
retry.backoff.ms to retry.backoff.max.ms (KIP-580; Java's CoordinatorRequestManager), and every retry of the group
protocol waits on one timer: a member cut off from the cluster asks about once a second, not once per failure.
"""
from __future__ import annotations

from ..kafka import protocol as P
from .assignors import ASSIGNORS, EAGER
from .backoff import ExponentialBackoff, RequestState

COMMIT_FAILED = frozenset({P.UNKNOWN_MEMBER_ID, P.ILLEGAL_GENERATION, P.REBALANCE_IN_PROGRESS,
                           P.FENCED_INSTANCE_ID})


class CommitFailedException(Exception):
    """The group has moved on (a rebalance, or this member was removed): the commit was refused."""


class Membership:
    def __init__(self, consumer, config):
        self.consumer = consumer
        self.group = config["group.id"]
        self.instance_id = config["group.instance.id"]
        self.protocols = config["partition.assignment.strategy"]
        self.cooperative = not any(p in EAGER for p in self.protocols)
        self.session_timeout = config.seconds("session.timeout.ms")
        self.heartbeat_interval = config.seconds("heartbeat.interval.ms")
        self.poll_interval = config.seconds("max.poll.interval.ms")
        self.topics: tuple = ()
        c = consumer
        self._lookup = RequestState(ExponentialBackoff(c.retry_backoff, config.seconds("retry.backoff.max.ms"),
                                                       c.world.rng(f"{c.name}/membership")))
        self.reset()

    def reset(self):
        self.coordinator = -1
        self.member_id = ""
        self.generation = -1
        self.state = "unjoined"           # unjoined | joining | stable
        self.rejoin_needed = False
        self.partitions_lost = False      # removed from the group: give them up, uncommitted, at the next poll
        self.assigned_counts = None       # as the group's leader: the partition counts it last assigned
        self._lookup.reset()
        self._retry_at = None             # the one pending retry of the group protocol
        self.last_poll = self.consumer.now
        self._heartbeat_at = 0.0
        self.refused = None               # an error for good (GROUP_AUTHORIZATION_FAILED): ask again at the next poll

    @property
    def active(self) -> bool:
        return bool(self.topics)

    def subscribe(self, topics):
        self.topics = tuple(topics)
        self.state = "unjoined"

    # ---- driven by poll() and by the client's tick ----------------------------------------------------------
    def on_poll(self):
        self.last_poll = self.consumer.now
        self.refused = None                              # the application polls again: the member asks again
        self._progress()

    def on_tick(self):
        if not self.active:
            return
        now = self.consumer.now
        if self.state == "stable" and now - self.last_poll > self.poll_interval:
            self._poll_timeout()
        elif self.state == "stable" and now >= self._heartbeat_at:
            self._heartbeat_at = now + self.heartbeat_interval
            self._send(P.HeartbeatRequest(0, self.group, self.generation, self.member_id), self._on_heartbeat)
        if self.coordinator < 0 and self.refused is None:
            self._find()             # (after a refusal for good the background thread does not ask again)

    def metadata_changed(self):
        """The group's leader rebalances once its metadata shows a subscribed topic with more partitions than it
        assigned (Java's ConsumerCoordinator compares its metadata snapshot with its assignment snapshot), so
        added partitions get an owner no sooner than the leader's next metadata refresh."""
        counts = self.assigned_counts
        if counts and self.state == "stable" and not self.rejoin_needed \
                and any(self.consumer.partition_count(t) != n for t, n in counts.items()):
            self.rejoin_needed = True              # at the next poll(), as the Java client does

    def _progress(self):
        if not self.active or self.refused is not None:
            return
        if self.coordinator < 0:
            return self._find()
        if self.state == "unjoined" or (self.state == "stable" and self.rejoin_needed):
            self._join()

    # ---- coordinator ------------------------------------------------------------------------------------
    def _find(self):
        """FindCoordinator to the least-loaded broker, unless one is in flight or the backoff has not passed."""
        c, lookup = self.consumer, self._lookup
        if lookup.in_flight:
            return
        wait = lookup.remaining(c.now)
        if wait > 0:
            return self._retry(wait)
        bid = c.least_loaded_node()
        if bid is None:                                  # every broker is backing off: no node to ask
            lookup.failed(c.now)
            return self._retry(lookup.remaining(c.now))
        lookup.sent()
        c.request(bid, P.FindCoordinatorRequest(0, self.group), self._on_find)

    def _on_find(self, response):
        now = self.consumer.now
        if isinstance(response, P.FindCoordinatorResponse) and response.error is None:
            self._lookup.succeeded(now)
            self.coordinator = response.coordinator
            self._progress()
        elif isinstance(response, P.FindCoordinatorResponse) and response.error in P.AUTHORIZATION_FAILED:
            self._lookup.failed(now)
            self.state = "unjoined"
            self.refused = response.error
            self.consumer.join_failed(response.error, "FindCoordinator")
        else:
            self._lookup.failed(now)
            self._retry(self._lookup.remaining(now))

    def _lost_coordinator(self):
        self.coordinator = -1
        self._retry()

    def _retry(self, delay=None):
        """Try the group protocol again after ``delay`` (retry.backoff.ms by default). Retries coalesce: one
        timer, the earliest asked for, so failures arriving together do not multiply the requests."""
        due = self.consumer.now + (self.consumer.retry_backoff if delay is None else delay)
        if self._retry_at is not None and self._retry_at <= due:
            return
        self._retry_at = due
        self.consumer.call_later(due - self.consumer.now, self._retry_due, due)

    def _retry_due(self, due):
        if self._retry_at != due:                        # superseded by an earlier retry
            return
        self._retry_at = None
        self._progress()

    def _send(self, message, on_response, timeout=None):
        c = self.consumer
        if self.coordinator < 0 or not c.ready(self.coordinator):
            if self.coordinator >= 0:
                c.call_later(c.retry_backoff, lambda: on_response(P.NETWORK_EXCEPTION))
            return
        c.request(self.coordinator, message, on_response, timeout=timeout)

    # ---- join and sync ----------------------------------------------------------------------------------
    def _join(self):
        c = self.consumer
        self.state = "joining"
        self.rejoin_needed = False
        if self.partitions_lost:                         # onPartitionsLost: no commit, they are someone else's
            self.partitions_lost = False
            c.revoke(list(c.assignment), lost=True)
        if not self.cooperative:
            c.revoke(list(c.assignment))                 # eager: give everything up before rejoining
        owned = tuple(c.assignment) if self.cooperative else ()
        # The Java client waits for JoinGroup up to the rebalance timeout plus 5 s, not request.timeout.ms.
        self._send(P.JoinGroupRequest(0, self.group, self.member_id, self.instance_id, self.protocols, self.topics,
                                      owned, self.session_timeout, self.poll_interval), self._on_join,
                   timeout=max(c.request_timeout, self.poll_interval + 5.0))

    def _retry_join(self, reset_member=False):
        if reset_member:
            self.member_id, self.generation = "", -1
        self.state = "unjoined"
        self._retry()

    def _on_join(self, response):
        if not isinstance(response, P.JoinGroupResponse):
            return self._coordinator_trouble(response)
        if response.error in (P.NOT_COORDINATOR, P.COORDINATOR_NOT_AVAILABLE):
            return self._coordinator_trouble(response.error)
        if response.error == P.MEMBER_ID_REQUIRED:
            self.member_id = response.member_id
            return self._join()
        if response.error == P.INVALID_SESSION_TIMEOUT or response.error in P.AUTHORIZATION_FAILED:
            self.state = "unjoined"                       # fatal in the Java client: raised out of poll()
            if response.error in P.AUTHORIZATION_FAILED:
                self.refused = response.error
            return self.consumer.join_failed(response.error)
        if response.error is not None:
            return self._retry_join(reset_member=response.error in (P.UNKNOWN_MEMBER_ID, P.ILLEGAL_GENERATION))
        self.member_id, self.generation = response.member_id, response.generation
        assignments = {}
        self.assigned_counts = None
        if response.leader == self.member_id and response.members:
            partitions = {t: self.consumer.partition_count(t)
                          for _m, topics, _o in response.members for t in topics if t in self.consumer.kafka.topics}
            assignments = ASSIGNORS[response.protocol](list(response.members), partitions)
            self.assigned_counts = partitions
        self._send(P.SyncGroupRequest(0, self.group, self.generation, self.member_id, assignments), self._on_sync)

    def _on_sync(self, response):
        if not isinstance(response, P.SyncGroupResponse):
            return self._coordinator_trouble(response)
        if response.error in (P.NOT_COORDINATOR, P.COORDINATOR_NOT_AVAILABLE):
            return self._coordinator_trouble(response.error)
        if response.error in P.AUTHORIZATION_FAILED:
            self.state, self.refused = "unjoined", response.error
            return self.consumer.join_failed(response.error, "SyncGroup")
        if response.error is not None:
            return self._retry_join(reset_member=response.error in (P.UNKNOWN_MEMBER_ID, P.ILLEGAL_GENERATION))
        c = self.consumer
        new = [tuple(tp) for tp in response.assignment]
        revoked = [tp for tp in c.assignment if tp not in new]
        if revoked:
            c.revoke(revoked)
        self.state = "stable"
        self._heartbeat_at = c.now + self.heartbeat_interval
        c.assigned(new, self.generation)
        if revoked and self.cooperative:
            self.rejoin_needed = True                    # KIP-429: the moved partitions go out in a second round
            self._join()

    def _coordinator_trouble(self, error):
        self._lost_coordinator()
        self.state = "unjoined"

    # ---- heartbeats and leaving -------------------------------------------------------------------------
    def _on_heartbeat(self, response):
        error = response if isinstance(response, str) else response.error
        if error is None or self.state != "stable":
            return
        if error == P.REBALANCE_IN_PROGRESS:
            self.rejoin_needed = True                    # rejoin on the next poll(), as the Java client does
        elif error in (P.UNKNOWN_MEMBER_ID, P.ILLEGAL_GENERATION, P.FENCED_INSTANCE_ID):
            self._kicked_out()
        elif error in P.AUTHORIZATION_FAILED:             # an ACL removed while the member was in the group
            self._kicked_out()
            self.refused = error
            self.consumer.join_failed(error, "Heartbeat")
        else:
            self._lost_coordinator()

    def _kicked_out(self):
        """The coordinator no longer knows us: our partitions are someone else's now. As in the Java client they
        are given up (as lost, without a commit) at the next poll; a commit before that fails."""
        self.partitions_lost = True
        self.member_id, self.generation = "", -1
        self.state = "unjoined"

    def _poll_timeout(self):
        """max.poll.interval.ms passed without a poll: leave the group so others can take the partitions."""
        self.consumer.world.history.event(self.consumer.now, self.consumer.name, "assign", type_="info",
                                          detail="max.poll.interval.ms expired: leaving the group")
        if self.instance_id is None:
            self._send(P.LeaveGroupRequest(0, self.group, self.member_id), lambda r: None)
        self._kicked_out()

    def leave(self):
        if self.state == "stable" and self.instance_id is None:
            self._send(P.LeaveGroupRequest(0, self.group, self.member_id), lambda r: None)
        self.member_id, self.generation, self.state = "", -1, "unjoined"

    # ---- commits ----------------------------------------------------------------------------------------
    def commit(self, offsets: dict, on_done):
        """OffsetCommit with this member's generation; ``on_done(error)``."""
        if not self.active:
            request = P.OffsetCommitRequest(0, self.group, -1, "", dict(offsets))
        elif self.state != "stable":
            return on_done(P.REBALANCE_IN_PROGRESS)
        else:
            request = P.OffsetCommitRequest(0, self.group, self.generation, self.member_id, dict(offsets))

        def answered(response):
            error = response if isinstance(response, str) else response.error
            if error in (P.NOT_COORDINATOR, P.COORDINATOR_NOT_AVAILABLE, P.NETWORK_EXCEPTION, P.REQUEST_TIMED_OUT):
                self._lost_coordinator()
            if error in COMMIT_FAILED and error != P.REBALANCE_IN_PROGRESS and self.active:
                self._kicked_out()
            on_done(error)

        if self.coordinator < 0:
            self._find()
            return self.consumer.call_later(self.consumer.retry_backoff, lambda: on_done(P.COORDINATOR_NOT_AVAILABLE))
        self._send(request, answered)

    def fetch_committed(self, tps, on_done):
        """OffsetFetch: ``on_done({tp: offset or -1})``, or None if the coordinator could not answer."""
        def answered(response):
            if isinstance(response, P.OffsetFetchResponse) and response.error is None:
                return on_done(response.offsets)
            if isinstance(response, P.OffsetFetchResponse) and response.error in P.AUTHORIZATION_FAILED:
                self.state, self.refused = "unjoined", response.error
                return self.consumer.join_failed(response.error, "OffsetFetch")
            if not (isinstance(response, P.OffsetFetchResponse) and response.error == P.UNSTABLE_OFFSET_COMMIT):
                self._lost_coordinator()              # (an unstable offset: a transaction is ending; ask again)
            on_done(None)

        if self.coordinator < 0:
            self._find()
            return self.consumer.call_later(self.consumer.retry_backoff, lambda: on_done(None))
        self._send(P.OffsetFetchRequest(0, self.group, tuple(tps)), answered)
