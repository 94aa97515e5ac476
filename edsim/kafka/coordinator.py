"""The group coordinator (Kafka's GroupCoordinator, classic protocol), one per broker.

A group belongs to the partition ``abs(hash(group.id)) % offsets.topic.num.partitions`` of the internal topic
``__consumer_offsets``; the leader of that partition is the group's coordinator, so when its broker dies the group
moves with the partition's leadership, and the new coordinator rebuilds the group from the partition's log.
Commits and the group's membership after each rebalance are records in that log, written with acks=all.

Membership follows the classic protocol: JoinGroup (the coordinator waits until every known member has rejoined
or the rebalance timeout passes), SyncGroup (the leader member computes the assignment), heartbeats, LeaveGroup,
session expiry, and static membership (KIP-345: a member with ``group.instance.id`` that comes back before its
session times out gets its old assignment without a rebalance).
"""
from __future__ import annotations

import functools

import numpy as np

from . import protocol as P
from .log import Batch

OFFSETS_TOPIC = "__consumer_offsets"


@functools.lru_cache(maxsize=4096)
def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (a group or transactional.id names few strings, asked for often: cached)."""
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def offsets_partition(group: str, partitions: int) -> int:
    """Kafka's ``Utils.abs(groupId.hashCode) % groupMetadataTopicPartitionCount``."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def leading_replica(broker, topic, key):
    """The replica of ``topic``'s partition for ``key`` if ``broker`` leads it (a coordinator's partition)."""
    config = broker.cluster.topics.get(topic)
    if config is None:
        return None
    replica = broker.replicas.get((topic, offsets_partition(key, config["partitions"])))
    return replica if replica is not None and replica.role == "leader" else None


class Member:
    __slots__ = ("member_id", "instance_id", "client", "protocols", "topics", "owned", "session_timeout",
                 "rebalance_timeout", "last_heartbeat", "join_reply", "sync_reply", "assignment")

    def __init__(self, member_id, instance_id, client, now):
        self.member_id = member_id
        self.instance_id = instance_id
        self.client = client
        self.protocols, self.topics, self.owned, self.assignment = (), (), (), ()
        self.session_timeout = self.rebalance_timeout = 0.0
        self.last_heartbeat = now
        self.join_reply = self.sync_reply = None


class Group:
    def __init__(self, group_id, tp):
        self.group_id = group_id
        self.tp = tp
        self.state = "Empty"
        self.generation = 0
        self.protocol = ""
        self.leader = ""
        self.members: dict[str, Member] = {}
        self.offsets: dict[tuple, int] = {}
        self.pending: dict[int, dict] = {}        # producer id -> offsets committed in its open transaction
        self.deadline = 0.0
        self.initial_delay_until = 0.0

    def static(self, instance_id):
        return next((m for m in self.members.values() if instance_id and m.instance_id == instance_id), None)


class GroupCoordinator:
    def __init__(self, broker):
        self.broker = broker
        self.groups: dict[str, Group] = {}
        self._ids = 0
        self._pending: set = set()          # member ids handed out, not yet joined with (KIP-394)
        config = broker.cluster.config
        self.initial_delay = config.seconds("group.initial.rebalance.delay.ms")
        self.commit_timeout = config.seconds("offsets.commit.timeout.ms")
        self.min_session = config.seconds("group.min.session.timeout.ms")
        self.max_session = config.seconds("group.max.session.timeout.ms")

    @property
    def now(self):
        return self.broker.now

    # ---- ownership: follows the leadership of __consumer_offsets partitions ------------------------------
    def _replica(self, group_id):
        return leading_replica(self.broker, OFFSETS_TOPIC, group_id)

    def became_leader(self, replica):
        """Load every group of this partition from its log (offset commits and membership records)."""
        self._unload(replica.tp)
        for batch in replica.log.batches:
            if batch.control is not None:
                self._resolve(replica.tp, batch.producer_id, batch.control == "COMMIT")
                continue
            for record in batch.payloads or ():
                kind, group_id = record[0], record[1]
                group = self.groups.get(group_id)
                if group is None:
                    group = self.groups[group_id] = Group(group_id, replica.tp)
                if kind == "offset":
                    group.offsets[record[2]] = record[3]
                elif kind == "txn-offset":
                    group.pending.setdefault(batch.producer_id, {})[record[2]] = record[3]
                else:
                    _, _, group.generation, group.protocol, group.leader, members = record
                    group.members = {}
                    for member_id, instance_id, client, timeout, assignment in members:
                        member = Member(member_id, instance_id, client, self.now)
                        member.session_timeout, member.assignment = timeout, assignment
                        group.members[member_id] = member
                    group.state = "Stable" if group.members else "Empty"

    def lost_leadership(self, replica):
        self._unload(replica.tp)

    def _unload(self, tp):
        """Forget the groups of ``tp``, answering the members waiting on them with NOT_COORDINATOR, so they look
        for the new coordinator at once rather than wait out their JoinGroup (GroupMetadataManager.onUnloaded:
        a rebalancing group completes its join futures, a stable one its sync futures)."""
        for group_id in [g for g, grp in self.groups.items() if grp.tp == tp]:
            for member in self.groups.pop(group_id).members.values():
                if member.join_reply is not None:
                    corr, reply = member.join_reply
                    member.join_reply = None
                    reply(P.JoinGroupResponse(corr, P.NOT_COORDINATOR, member_id=member.member_id))
                if member.sync_reply is not None:
                    corr, reply = member.sync_reply
                    member.sync_reply = None
                    reply(P.SyncGroupResponse(corr, P.NOT_COORDINATOR))

    def _group(self, group_id, create=True):
        replica = self._replica(group_id)
        if replica is None:
            return None, None
        group = self.groups.get(group_id)
        if group is None and create:
            group = self.groups[group_id] = Group(group_id, replica.tp)
        return group, replica

    def _write(self, replica, records, done, producer=None):
        """Append records to the group's partition with acks=all; ``done(error)`` once committed (or not).
        ``producer`` = (id, epoch) writes them inside that producer's transaction."""
        n = len(records)
        pid, epoch = producer if producer is not None else (-1, -1)
        batch = Batch(-1, -1, np.full(n, -1, np.int64), np.full(n, -1, np.int64), list(records), pid, epoch,
                      transactional=producer is not None)
        replica.handle_produce(batch, "all", self.commit_timeout, lambda error, base=-1: done(error))

    # ---- requests ---------------------------------------------------------------------------------------
    def handle(self, message, send):
        kind = type(message)
        if kind is P.JoinGroupRequest and not self.min_session <= message.session_timeout <= self.max_session:
            # GroupCoordinatorService.joinGroup checks the session timeout against group.min/max.session.timeout.ms
            # before it looks at the group: a member outside the bounds never joins.
            return send(P.JoinGroupResponse(message.corr, P.INVALID_SESSION_TIMEOUT, member_id=message.member_id))
        group, replica = self._group(message.group, create=kind is not P.OffsetFetchRequest)
        if replica is None:
            error = P.NOT_COORDINATOR
            reply = {P.JoinGroupRequest: P.JoinGroupResponse, P.SyncGroupRequest: P.SyncGroupResponse,
                     P.HeartbeatRequest: P.HeartbeatResponse, P.LeaveGroupRequest: P.LeaveGroupResponse,
                     P.OffsetCommitRequest: P.OffsetCommitResponse, P.OffsetFetchRequest: P.OffsetFetchResponse,
                     P.TxnOffsetCommitRequest: P.OffsetCommitResponse}
            return send(reply[kind](message.corr, error))
        if kind is P.JoinGroupRequest:
            self._join(group, message, send)
        elif kind is P.SyncGroupRequest:
            self._sync(group, replica, message, send)
        elif kind is P.HeartbeatRequest:
            send(P.HeartbeatResponse(message.corr, self._heartbeat(group, message)))
        elif kind is P.LeaveGroupRequest:
            if message.member_id in group.members:
                self._remove(group, message.member_id)
            send(P.LeaveGroupResponse(message.corr, None))
        elif kind is P.OffsetCommitRequest:
            self._commit(group, replica, message, send)
        elif kind is P.TxnOffsetCommitRequest:
            self._txn_commit(group, replica, message, send)
        elif kind is P.OffsetFetchRequest:
            offsets = group.offsets if group is not None else {}
            if group is not None and any(tp in pending for pending in group.pending.values() for tp in message.tps):
                # KIP-447: an offset committed in a transaction not yet ended is unstable; the consumer waits
                return send(P.OffsetFetchResponse(message.corr, P.UNSTABLE_OFFSET_COMMIT))
            send(P.OffsetFetchResponse(message.corr, None, {tp: offsets.get(tp, -1) for tp in message.tps}))

    def _join(self, group, req, send):
        reply = send
        member = group.members.get(req.member_id) if req.member_id else None
        if not req.member_id and req.instance_id is None:
            # KIP-394: a new dynamic member first gets its id, then joins with it, so a retried JoinGroup
            # cannot leave a ghost member behind.
            self._ids += 1
            member_id = f"{req.reply_to}-{self._ids}"
            self._pending.add(member_id)
            return reply(P.JoinGroupResponse(req.corr, P.MEMBER_ID_REQUIRED, member_id=member_id))
        if req.member_id and member is None and req.member_id in self._pending:
            self._pending.discard(req.member_id)
            member = Member(req.member_id, None, req.reply_to, self.now)
            group.members[member.member_id] = member
        if req.member_id and member is None:
            return reply(P.JoinGroupResponse(req.corr, P.UNKNOWN_MEMBER_ID))
        static = group.static(req.instance_id) if member is None else None
        if static is not None:
            # KIP-345: the same instance is back under a new member id; it takes the old one's place.
            self._ids += 1
            new_id = f"{req.reply_to}-{req.instance_id}-{self._ids}"
            del group.members[static.member_id]
            if group.leader == static.member_id:
                group.leader = new_id
            static.member_id, static.client = new_id, req.reply_to
            group.members[new_id] = member = static
            if group.state == "Stable":
                member.last_heartbeat = self.now
                return reply(P.JoinGroupResponse(req.corr, None, group.generation, group.protocol, group.leader,
                                                 new_id, ()))
        if member is None:
            self._ids += 1
            member = Member(f"{req.reply_to}-{self._ids}", req.instance_id, req.reply_to, self.now)
            group.members[member.member_id] = member
        member.protocols, member.topics, member.owned = req.protocols, req.topics, req.owned
        member.session_timeout, member.rebalance_timeout = req.session_timeout, req.rebalance_timeout
        member.last_heartbeat = self.now
        member.join_reply = (req.corr, reply)
        if group.state != "PreparingRebalance":
            self._prepare_rebalance(group)
        self._try_complete_join(group)

    def _prepare_rebalance(self, group):
        if group.state == "Empty":
            # group.initial.rebalance.delay.ms: the first rebalance waits for more members to arrive.
            group.initial_delay_until = self.now + self.initial_delay
        for member in group.members.values():          # syncs waiting on an abandoned assignment
            if member.sync_reply is not None:
                corr, reply = member.sync_reply
                member.sync_reply = None
                reply(P.SyncGroupResponse(corr, P.REBALANCE_IN_PROGRESS))
        group.state = "PreparingRebalance"
        group.deadline = self.now + max([m.rebalance_timeout for m in group.members.values()] or [0.0])

    def _try_complete_join(self, group):
        if group.state != "PreparingRebalance" or self.now < group.initial_delay_until:
            return
        if any(m.join_reply is None for m in group.members.values()) and self.now < group.deadline:
            return
        for member_id in [m for m, member in group.members.items() if member.join_reply is None]:
            del group.members[member_id]                  # did not rejoin within the rebalance timeout
        group.generation += 1
        if not group.members:
            group.state, group.leader, group.protocol = "Empty", "", ""
            return
        members = list(group.members.values())
        common = [p for p in members[0].protocols if all(p in m.protocols for m in members)]
        group.protocol = common[0] if common else members[0].protocols[0]
        if group.leader not in group.members:
            group.leader = members[0].member_id
        group.state = "CompletingRebalance"
        everyone = tuple((m.member_id, m.topics, m.owned) for m in members)
        for member in members:
            corr, reply = member.join_reply
            member.join_reply = None
            member.last_heartbeat = self.now
            reply(P.JoinGroupResponse(corr, None, group.generation, group.protocol, group.leader, member.member_id,
                                      everyone if member.member_id == group.leader else ()))

    @staticmethod
    def _check_member(group, member_id, generation):
        """UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION for a request from outside the current generation."""
        if member_id not in group.members:
            return P.UNKNOWN_MEMBER_ID
        if generation != group.generation:
            return P.ILLEGAL_GENERATION
        return None

    def _sync(self, group, replica, req, send):
        error = self._check_member(group, req.member_id, req.generation)
        if error is not None:
            return send(P.SyncGroupResponse(req.corr, error))
        member = group.members[req.member_id]
        if group.state == "PreparingRebalance":
            return send(P.SyncGroupResponse(req.corr, P.REBALANCE_IN_PROGRESS))
        if group.state == "Stable":
            return send(P.SyncGroupResponse(req.corr, None, member.assignment))
        member.sync_reply = (req.corr, lambda response: send(response))
        if req.member_id != group.leader:
            return
        generation = group.generation
        for member_id, m in group.members.items():
            m.assignment = tuple(req.assignments.get(member_id, ()))
        record = ("group", group.group_id, group.generation, group.protocol, group.leader,
                  tuple((m.member_id, m.instance_id, m.client, m.session_timeout, m.assignment)
                        for m in group.members.values()))

        def stored(error):
            if group.generation != generation or group.state != "CompletingRebalance":
                return
            if error is None:
                group.state = "Stable"
            for m in group.members.values():
                if m.sync_reply is not None:
                    corr, reply = m.sync_reply
                    m.sync_reply = None
                    reply(P.SyncGroupResponse(corr, None, m.assignment) if error is None
                          else P.SyncGroupResponse(corr, P.COORDINATOR_NOT_AVAILABLE))
            if error is not None:
                self._prepare_rebalance(group)

        self._write(replica, [record], stored)

    def _heartbeat(self, group, req):
        error = self._check_member(group, req.member_id, req.generation)
        if error is not None:
            return error
        group.members[req.member_id].last_heartbeat = self.now
        return P.REBALANCE_IN_PROGRESS if group.state == "PreparingRebalance" else None

    def _remove(self, group, member_id):
        del group.members[member_id]
        if group.leader == member_id:
            group.leader = ""
        if group.state in ("Stable", "CompletingRebalance"):
            self._prepare_rebalance(group)
        self._try_complete_join(group)

    def _commit(self, group, replica, req, send):
        if req.generation >= 0 or req.member_id:
            error = self._check_member(group, req.member_id, req.generation)
            if error is None and group.state == "CompletingRebalance":
                error = P.REBALANCE_IN_PROGRESS
            if error is not None:
                return send(P.OffsetCommitResponse(req.corr, error))
            group.members[req.member_id].last_heartbeat = self.now
        elif group.members:
            return send(P.OffsetCommitResponse(req.corr, P.UNKNOWN_MEMBER_ID))   # the group is in use
        offsets = dict(req.offsets)

        def stored(error):
            if error is None:
                group.offsets.update(offsets)
            send(P.OffsetCommitResponse(req.corr, None if error is None else P.COORDINATOR_NOT_AVAILABLE))

        self._write(replica, [("offset", group.group_id, tp, o) for tp, o in offsets.items()], stored)

    def _txn_commit(self, group, replica, req, send):
        """TxnOffsetCommit: offsets written inside the producer's transaction, visible once its COMMIT marker is
        written here. KIP-447: the producer sends the consumer's group metadata, so a member that is no longer
        in the current generation (a zombie after a rebalance) cannot commit."""
        if req.generation >= 0 or req.member_id:
            error = self._check_member(group, req.member_id, req.generation)
            if error is not None:
                return send(P.OffsetCommitResponse(req.corr, error))
        offsets = dict(req.offsets)

        def stored(error):
            if error is None:
                group.pending.setdefault(req.producer_id, {}).update(offsets)
            elif error == P.INVALID_PRODUCER_EPOCH:
                error = P.PRODUCER_FENCED
            else:
                error = P.COORDINATOR_NOT_AVAILABLE
            send(P.OffsetCommitResponse(req.corr, error))

        self._write(replica, [("txn-offset", group.group_id, tp, o) for tp, o in offsets.items()], stored,
                    producer=(req.producer_id, req.producer_epoch))

    def transaction_ended(self, tp, producer_id, commit):
        """A marker was written to our partition ``tp``: the transaction's offsets apply, or are dropped."""
        replica = self.broker.replicas.get(tp)
        if replica is not None and replica.role == "leader":
            self._resolve(tp, producer_id, commit)

    def _resolve(self, tp, producer_id, commit):
        for group in self.groups.values():
            if group.tp == tp:
                offsets = group.pending.pop(producer_id, None)
                if offsets and commit:
                    group.offsets.update(offsets)

    # ---- time -------------------------------------------------------------------------------------------
    def tick(self):
        now = self.now
        for group in list(self.groups.values()):
            if self._replica(group.group_id) is None:
                continue
            expired = [m.member_id for m in group.members.values()
                       if m.join_reply is None and now - m.last_heartbeat > m.session_timeout]
            for member_id in expired:
                if member_id in group.members:       # an earlier removal may have completed a rebalance
                    self._remove(group, member_id)
            self._try_complete_join(group)
