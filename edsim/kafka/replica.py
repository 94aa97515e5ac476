"""One broker's replica of one partition: its log, high watermark, and what it does as leader or follower.

As leader (Kafka's ``Partition``): append produce requests, serve fetches, track each follower's log end offset
and when it was last caught up, advance the high watermark to the smallest LEO in the ISR, propose ISR shrinks
and expansions to the controller (AlterPartition, KIP-497), complete produce requests waiting for acks=all.
As follower (``ReplicaFetcherThread``): fetch from the leader, append, truncate where its log diverges.
"""
from __future__ import annotations

import numpy as np

from . import protocol as P
from .coordinator import OFFSETS_TOPIC
from .log import Batch, Log, ProducerState
from .transactions import TXN_TOPIC

INTERNAL = (OFFSETS_TOPIC, TXN_TOPIC)


_MARKER_VALUE = np.full(1, -1, np.int64)     # a marker's one record: no application value


MARKER_TIMEOUT = 30.0     # a marker is acknowledged like an acks=all produce request with this timeout


class FollowerState:
    """The leader's view of one follower (Kafka's ``Replica`` state)."""

    __slots__ = ("leo", "caught_up", "last_fetch_time", "last_fetch_leader_leo")

    def __init__(self, now):
        self.leo = -1                 # unknown until the follower fetches from this leader
        self.caught_up = now          # Kafka starts ISR members as caught up when a leader is elected
        self.last_fetch_time = now
        self.last_fetch_leader_leo = -1


class Replica:
    def __init__(self, broker, tp, replicas, min_insync, unclean):
        self.broker = broker
        self.tp = tp
        self.replicas = tuple(replicas)
        self.min_insync = min_insync
        self.unclean = unclean
        # on disk: kept across crashes
        self.log = Log(broker.world.env)
        self.flush_interval = None          # flush.ms in seconds (None: never, Kafka's default)
        self.topic_config = None            # the topic's configs (cleanup.policy, retention, ...): cluster.py
        self.compacted = False              # cleanup.policy includes compact (set with topic_config)
        self.hw_checkpoint = 0
        self.reset_memory()

    # ---- lifecycle --------------------------------------------------------------------------------------
    def reset_memory(self):
        """What a crash forgets; a restart reloads the high watermark from its checkpoint file."""
        self.hw = min(self.hw_checkpoint, self.log.end)
        self.producers = ProducerState.from_log(self.log)
        self.role = None
        self.leader = -1
        self.leader_epoch = -1
        self.isr: tuple = ()
        self.partition_epoch = -1
        self.pending_isr: tuple | None = None
        self.followers: dict[int, FollowerState] = {}
        self.waiting_produce: list = []    # [deadline, end offset, reply]
        self.waiting_fetch: list = []      # [deadline, request, reply]
        self.fetch_corr = None             # our outstanding fetch as a follower
        self.fetch_sent = 0.0
        self.alter_sent = 0.0

    @property
    def effective_min_isr(self) -> int:
        """min.insync.replicas capped at the replica count, as Kafka does since 3.7 (apache/kafka PR #14594)."""
        return min(self.min_insync, len(self.replicas))

    def maximal_isr(self):
        """The ISR the leader must wait for: committed plus proposed, so a pending change never lowers safety."""
        if self.pending_isr is None:
            return self.isr
        return tuple(sorted(set(self.isr) | set(self.pending_isr)))

    @property
    def last_stable_offset(self) -> int:
        """The LSO: below it every transaction has ended (and its marker is below the high watermark);
        read_committed consumers read up to here, not to the high watermark (KIP-98)."""
        first = self.producers.first_unstable(self.hw)
        return self.hw if first is None or first > self.hw else first

    # ---- metadata from the controller --------------------------------------------------------------------
    def apply(self, state: P.PartitionState):
        me = self.broker.id
        if state.leader_epoch < self.leader_epoch:
            return                                  # stale record
        if state.leader == me:
            if self.role == "leader" and state.leader_epoch == self.leader_epoch:
                self._commit_isr(state)
            else:
                self._become_leader(state)
        elif self.role == "follower" and state.leader_epoch == self.leader_epoch and state.leader == self.leader:
            self.isr, self.partition_epoch = state.isr, state.partition_epoch
        else:
            self._become_follower(state)

    def _become_leader(self, state):
        self.role = "leader"
        self.leader = self.broker.id
        self.leader_epoch = state.leader_epoch
        self.isr, self.partition_epoch, self.pending_isr = state.isr, state.partition_epoch, None
        self.fetch_corr = None
        self.log.assign_epoch(state.leader_epoch, self.log.end)
        now = self.broker.now
        self.followers = {r: FollowerState(now) for r in self.replicas if r != self.broker.id}
        self._fail_waiting_fetches(P.NOT_LEADER_OR_FOLLOWER)
        self.maybe_advance_hw()
        if self.tp[0] in INTERNAL:
            self.broker.internal_leadership(self, True)

    def _commit_isr(self, state):
        self.isr, self.partition_epoch = state.isr, state.partition_epoch
        if self.pending_isr is not None and tuple(self.pending_isr) == tuple(state.isr):
            self.pending_isr = None
        self.maybe_advance_hw()
        self.broker.cluster.check_invariants(self.tp)

    def _become_follower(self, state):
        if self.role == "leader":
            self._fail_waiting_produces(P.NOT_LEADER_OR_FOLLOWER)
            self._fail_waiting_fetches(P.NOT_LEADER_OR_FOLLOWER)
            if self.tp[0] in INTERNAL:
                self.broker.internal_leadership(self, False)
        self.role = "follower"
        self.leader = state.leader
        self.leader_epoch = state.leader_epoch
        self.isr, self.partition_epoch, self.pending_isr = state.isr, state.partition_epoch, None
        self.followers = {}
        if self.broker.legacy_truncation:
            # Before KIP-101 a new follower cut its log back to its own high watermark.
            self._truncate(self.hw)
        self.fetch_corr = None
        if self.leader >= 0:
            self.send_fetch()

    # ---- leader: produce ---------------------------------------------------------------------------------
    def handle_produce(self, batch, acks: str, timeout: float, reply):
        """Append one partition's batch of a produce request (Kafka's ``Partition.appendRecordsToLeader``) and
        call ``reply(error, base_offset)`` once it is answered: at once for acks=1, once the high watermark
        reaches it for acks=all (at most ``timeout`` later: REQUEST_TIMED_OUT), never for acks=0. The broker
        gathers the partitions of one ProduceRequest (``ReplicaManager.appendRecords``, ``DelayedProduce``);
        the group and transaction coordinators call this directly for their internal topics."""
        if self.role != "leader":
            return reply(P.NOT_LEADER_OR_FOLLOWER)
        if acks == "all" and len(self.isr) < self.effective_min_isr:
            return reply(P.NOT_ENOUGH_REPLICAS)
        if self.compacted and batch.control is None and (batch.keys < 0).any():
            return reply(P.INVALID_RECORD)     # LogValidator: "Compacted topic cannot accept message without key"
        if batch.producer_id >= 0:
            verdict, detail = self.producers.check(batch)
            if verdict == "error":
                return reply(detail)
            if verdict == "duplicate":   # a retry of a batch already in the log: answer with its offset
                return self._acknowledge(acks, timeout, reply, detail, detail + len(batch))
        placed = batch.at(self.log.end, self.leader_epoch)
        self.log.append(placed)
        if placed.producer_id >= 0:
            self.producers.record(placed)
        self._wake_followers()
        self.maybe_advance_hw()
        self._acknowledge(acks, timeout, reply, placed.base, placed.end)

    def _acknowledge(self, acks, timeout, reply, base, end):
        if acks == "0":
            return
        if acks == "1" or self.hw >= end:
            return self._reply_produce(reply, base)
        deadline = self.broker.now + timeout
        self.waiting_produce.append([deadline, end, base, reply])
        self.broker.wait_until(deadline)

    def _reply_produce(self, reply, base):
        # Kafka's DelayedProduce: the high watermark reached the records, but the ISR may have shrunk since.
        if len(self.isr) < self.effective_min_isr:
            return reply(P.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
        reply(None, base)

    def _fail_waiting_produces(self, error):
        waiting, self.waiting_produce = self.waiting_produce, []
        for _deadline, _end, _base, reply in waiting:
            reply(error)

    # ---- leader: transaction markers ----------------------------------------------------------------------
    def handle_marker(self, req: P.WriteTxnMarkersRequest, reply):
        """Append a COMMIT or ABORT marker (a control batch of one record: it takes an offset) for the producer's
        transaction here; answered once the marker is replicated (acks=all), as Kafka's WriteTxnMarkers is."""
        if self.role != "leader":
            return reply(P.NOT_LEADER_OR_FOLLOWER)
        if len(self.isr) < self.effective_min_isr:
            return reply(P.NOT_ENOUGH_REPLICAS)
        error = self.producers.check_marker(req.producer_id, req.producer_epoch)
        if error is not None:
            return reply(error)
        marker = Batch(self.log.end, self.leader_epoch, _MARKER_VALUE, _MARKER_VALUE, None, req.producer_id,
                       req.producer_epoch, -1, self.broker.now, True, "COMMIT" if req.commit else "ABORT")
        self.log.append(marker)
        self.producers.record_marker(marker)
        self._wake_followers()
        self.maybe_advance_hw()
        self._acknowledge("all", MARKER_TIMEOUT, reply, marker.base, marker.end)

    # ---- leader: fetch -----------------------------------------------------------------------------------
    def handle_fetch(self, req: P.FetchRequest, reply):
        if self.role != "leader":
            return reply(P.NOT_LEADER_OR_FOLLOWER)
        if req.leader_epoch >= 0 and req.leader_epoch != self.leader_epoch:
            # KIP-320: a fetcher that knows a newer epoch has found a stale leader, and vice versa
            return reply(P.UNKNOWN_LEADER_EPOCH if req.leader_epoch > self.leader_epoch else P.FENCED_LEADER_EPOCH)
        log = self.log
        if req.last_fetched_epoch >= 0:
            epoch, end = log.end_offset_for_epoch(req.last_fetched_epoch)
            if epoch != req.last_fetched_epoch or end < req.offset:
                return reply(None, diverging=(epoch, end))
        if req.offset > log.end or req.offset < log.start:
            return reply(P.OFFSET_OUT_OF_RANGE)
        if req.replica >= 0:
            self._follower_fetched(req.replica, req.offset)
        if req.offset < self._limit(req) or req.max_wait <= 0:
            return self._reply_fetch(req, reply)
        deadline = self.broker.now + req.max_wait
        self.waiting_fetch.append([deadline, req, reply])
        self.broker.wait_until(deadline)

    def _limit(self, req):
        """How far a fetcher may read: a follower to the log end, a consumer to the high watermark, a
        read_committed consumer to the last stable offset."""
        if req.replica >= 0:
            return self.log.end
        return self.last_stable_offset if req.isolation == "read_committed" else self.hw

    def _reply_fetch(self, req, reply):
        limit = self._limit(req)
        batches = self.log.read(req.offset, limit, self.broker.max_fetch_records, req.max_bytes)
        aborted = ()
        if req.replica < 0 and req.isolation == "read_committed" and batches and self.producers.aborted:
            aborted = self.producers.aborted_between(req.offset, batches[-1].end)
        reply(None, batches=batches, aborted=aborted)

    def _wake_followers(self):
        if not self.waiting_fetch:
            return
        keep = []
        for item in self.waiting_fetch:
            if item[1].replica >= 0:
                self._reply_fetch(item[1], item[2])
            else:
                keep.append(item)
        self.waiting_fetch = keep

    def _wake_consumers(self):
        if not self.waiting_fetch:
            return
        keep = []
        for item in self.waiting_fetch:
            req = item[1]
            if req.replica < 0 and req.offset < self._limit(req):
                self._reply_fetch(req, item[2])
            else:
                keep.append(item)
        self.waiting_fetch = keep

    def _fail_waiting_fetches(self, error):
        waiting, self.waiting_fetch = self.waiting_fetch, []
        for _deadline, _req, reply in waiting:
            reply(error)

    def expire(self, now):
        """Answer requests whose wait is over (Kafka's purgatory expiration); the earliest deadline left, or
        None if nothing waits."""
        if self.waiting_fetch:
            due = [w for w in self.waiting_fetch if w[0] <= now]
            if due:
                self.waiting_fetch = [w for w in self.waiting_fetch if w[0] > now]
                for _deadline, req, reply in due:
                    self._reply_fetch(req, reply)
        if self.waiting_produce:
            due = [w for w in self.waiting_produce if w[0] <= now]
            if due:
                self.waiting_produce = [w for w in self.waiting_produce if w[0] > now]
                for _deadline, _end, _base, reply in due:
                    reply(P.REQUEST_TIMED_OUT)
        deadlines = [w[0] for w in self.waiting_fetch] + [w[0] for w in self.waiting_produce]
        return min(deadlines) if deadlines else None

    # ---- leader: follower progress, ISR and high watermark ------------------------------------------------
    def _follower_fetched(self, rid, offset):
        state = self.followers.get(rid)
        if state is None:
            return
        now = self.broker.now
        leo = self.log.end
        # Kafka's Replica.updateFetchState: caught up if it asked for everything we had now, or at its last fetch.
        if offset >= leo:
            state.caught_up = now
        elif offset >= state.last_fetch_leader_leo:
            state.caught_up = max(state.caught_up, state.last_fetch_time)
        state.last_fetch_leader_leo = leo
        state.last_fetch_time = now
        state.leo = offset
        if (self.pending_isr is None and rid not in self.isr and offset >= self.hw
                and offset >= self._epoch_start()):
            self._propose_isr(tuple(sorted(self.isr + (rid,))))
        self.maybe_advance_hw()

    def _epoch_start(self):
        for epoch, start in reversed(self.log.epochs):
            if epoch == self.leader_epoch:
                return start
        return 0

    def maybe_advance_hw(self):
        if self.role != "leader":
            return
        # Since Kafka 3.7 (KAFKA-15583) the high watermark stays put while the ISR is below min.insync.replicas.
        if len(self.isr) < self.effective_min_isr:
            return
        new = self.log.end
        me = self.broker.id
        for r in self.maximal_isr():
            if r != me:
                follower = self.followers.get(r)
                leo = follower.leo if follower is not None else -1
                if leo < new:
                    new = leo
        if new > self.hw:
            self.hw = new
            self._high_watermark_advanced()

    def _high_watermark_advanced(self):
        if self.waiting_produce:
            done = [w for w in self.waiting_produce if w[1] <= self.hw]
            if done:
                self.waiting_produce = [w for w in self.waiting_produce if w[1] > self.hw]
                for _deadline, _end, base, reply in done:
                    self._reply_produce(reply, base)
        self._wake_consumers()
        self.broker.cluster.check_invariants(self.tp)

    def shrink_isr(self, now, lag):
        """Drop followers that have not caught up for replica.lag.time.max.ms (Kafka's isr-expiration task)."""
        if self.role != "leader" or self.pending_isr is not None:
            return
        out = [r for r in self.isr if r != self.broker.id
               and (r not in self.followers or now - self.followers[r].caught_up > lag)]
        if out:
            self._propose_isr(tuple(r for r in self.isr if r not in out))

    def _propose_isr(self, isr):
        self.pending_isr = isr
        self.alter_sent = self.broker.now
        self.broker.send_alter_partition(self)

    def alter_failed(self, error):
        self.pending_isr = None

    # ---- follower ----------------------------------------------------------------------------------------
    def send_fetch(self, reconnect=False):
        broker = self.broker
        if reconnect:
            broker.world.network.reconnect(broker.name, f"broker-{self.leader}")
        self.fetch_corr = corr = broker.next_corr()
        self.fetch_sent = broker.now
        last_epoch = -1 if broker.legacy_truncation else self.log.last_epoch
        broker.send_to_broker(self.leader, P.FetchRequest(
            corr, self.tp, self.log.end, broker.id, self.leader_epoch, last_epoch, broker.fetch_wait,
            reply_to=broker.name))

    def handle_fetch_response(self, resp: P.FetchResponse):
        if resp.corr != self.fetch_corr or self.role != "follower":
            return
        self.fetch_corr = None
        broker = self.broker
        if resp.diverging_epoch is not None:
            epoch, end = resp.diverging_epoch
            # KIP-279: cut at the smaller of where that epoch ends on the leader and here; repeat until agreed.
            mine_epoch, mine_end = self.log.end_offset_for_epoch(epoch) if epoch >= 0 else (-1, -1)
            cut = min(end, mine_end) if mine_epoch >= 0 else self.log.start
            self._truncate(cut)
            return self.send_fetch()
        if resp.error == P.OFFSET_OUT_OF_RANGE and resp.log_end >= 0 and resp.log_end < self.log.end:
            self._truncate(resp.log_end)        # pre-KIP-101: cut back to the leader's end and go on
            return self.send_fetch()
        if resp.error == P.OFFSET_OUT_OF_RANGE and resp.log_start > self.log.end:
            # behind the leader's log start (retention deleted what we lack): ReplicaFetcherThread's
            # truncateFullyAndStartAt(leader's log start)
            self.log.truncate_fully_and_start_at(resp.log_start)
            self.producers = ProducerState.from_log(self.log)
            self.hw = min(self.hw, self.log.end)
            return self.send_fetch()
        if resp.error is not None:
            self.fetch_corr = -1                # back off, then try again (replica.fetch.backoff.ms)
            broker.call_later(broker.fetch_backoff, self._retry_fetch)
            return
        log = self.log
        for batch in resp.batches:
            if batch.end <= log.end:
                continue
            if batch.base < log.end:
                batch = batch.tail(log.end)
            log.append(batch)                  # (it may start past our end: the leader compacted what was between)
            if batch.control is not None:
                self.producers.record_marker(batch)
            elif batch.producer_id >= 0:
                self.producers.record(batch)
        self.hw = max(self.hw, min(resp.high_watermark, log.end))
        self.send_fetch()

    def _retry_fetch(self):
        if self.role == "follower" and self.fetch_corr == -1 and self.leader >= 0:
            self.send_fetch()

    def fetch_failed(self):
        """Our request was lost with the connection (the leader crashed): back off and retry."""
        if self.role == "follower" and self.fetch_corr not in (None, -1):
            self.fetch_corr = -1
            self.broker.call_later(self.broker.fetch_backoff, self._retry_fetch)

    def _truncate(self, offset):
        cut = offset < self.log.end
        self.log.truncate(offset)
        if cut:
            self.producers = ProducerState.from_log(self.log)
        self.hw = min(self.hw, self.log.end)
        self.broker.cluster.check_invariants(self.tp)
