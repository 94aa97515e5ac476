"""One broker's replica of one partition: its log, high watermark, and what it does as leader or follower.

As leader (Kafka's ``Partition``): append produce requests, serve fetches, track each follower's log end offset
and when it was last caught up, advance the high watermark to the smallest LEO in the ISR, propose ISR shrinks
and expansions to the controller (AlterPartition, KIP-497), complete produce requests waiting for acks=all.
As follower: its broker's ReplicaFetcher for the leader (fetcher.py) fetches it with the leader's other
partitions; ``handle_fetched`` appends what comes back, truncates where the log diverges, and follows the high
watermark. The broker-level handling of a FetchRequest is in fetch.py; the per-partition checks are here.
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
UNCHANGED, FETCHED, FAILED = 0, 1, 2     # what a fetch answer did to a follower's partition (handle_fetched)


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
        # min.insync.replicas capped at the replica count, as Kafka does since 3.7 (apache/kafka PR #14594)
        self.effective_min_isr = min(min_insync, len(self.replicas))
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
        self.waiting_fetch: list = []      # consumers' DelayedFetches that include this partition (fetch.py)
        self.sessions: list = []           # followers' fetch sessions on this broker that include it (fetch.py)
        self.fetcher = None                # as a follower: the broker's ReplicaFetcher that fetches it
        self.alter_sent = 0.0

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
        self.broker.stop_fetching(self)
        self.log.assign_epoch(state.leader_epoch, self.log.end)
        now = self.broker.now
        self.followers = {r: FollowerState(now) for r in self.replicas if r != self.broker.id}
        self._complete_waiting_fetches()
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
            self._complete_waiting_fetches()
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
        # AbstractFetcherManager.addFetcherForPartitions: the fetcher of the new leader takes the partition
        # (removeFetcherForPartitions first, if it was another's)
        self.broker.start_fetching(self)

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

    # ---- leader: fetch (the request as a whole is fetch.py's) ----------------------------------------------
    def check_fetch(self, offset, leader_epoch, last_fetched_epoch):
        """The checks of one partition of a fetch (``Partition.fetchRecords`` / ``readRecords``):
        (error, diverging epoch), both None when it may be read from ``offset``. KIP-320: a fetcher that knows a
        newer leader epoch has found a stale leader (UNKNOWN_LEADER_EPOCH), one that knows an older one is stale
        itself (FENCED_LEADER_EPOCH); a last fetched epoch that this log ends earlier, or does not know, is a
        diverging epoch (KIP-279 via the fetch, KIP-595's ``lastFetchedEpoch``); an offset outside the log is
        OFFSET_OUT_OF_RANGE."""
        if self.role != "leader":
            return P.NOT_LEADER_OR_FOLLOWER, None
        if leader_epoch >= 0 and leader_epoch != self.leader_epoch:
            return (P.UNKNOWN_LEADER_EPOCH if leader_epoch > self.leader_epoch else P.FENCED_LEADER_EPOCH), None
        log = self.log
        if last_fetched_epoch >= 0:
            epoch, end = log.end_offset_for_epoch(last_fetched_epoch)
            if epoch != last_fetched_epoch or end < offset:
                return None, (epoch, end)
        if offset > log.end or offset < log.start:
            return P.OFFSET_OUT_OF_RANGE, None
        return None, None

    def _wake_followers(self):
        """Records were appended: the held fetches of followers' sessions that include this partition may answer
        (``ReplicaManager.appendRecords`` -> ``delayedFetchPurgatory.checkAndComplete``)."""
        for session in self.sessions:
            if session.parked is not None:
                session.parked.try_complete()

    def _wake_consumers(self):
        """The high watermark (and with it the last stable offset) advanced: held consumer fetches may answer."""
        if self.waiting_fetch:
            for delayed in list(self.waiting_fetch):
                delayed.try_complete()

    def _complete_waiting_fetches(self):
        """Leadership moved: every held fetch that includes this partition answers now (its answer says
        NOT_LEADER_OR_FOLLOWER for this partition; ``ReplicaManager.completeDelayedFetchOrProduceRequests``)."""
        for delayed in list(self.waiting_fetch):
            delayed.complete()
        for session in list(self.sessions):
            if session.parked is not None:
                session.parked.complete()

    def expire(self, now):
        """Answer produce requests whose wait is over (Kafka's purgatory expiration); the earliest deadline left,
        or None if nothing waits. (Held fetches expire in fetch.py.)"""
        if self.waiting_produce:
            due = [w for w in self.waiting_produce if w[0] <= now]
            if due:
                self.waiting_produce = [w for w in self.waiting_produce if w[0] > now]
                for _deadline, _end, _base, reply in due:
                    reply(P.REQUEST_TIMED_OUT)
        deadlines = [w[0] for w in self.waiting_produce]
        return min(deadlines) if deadlines else None

    # ---- leader: follower progress, ISR and high watermark ------------------------------------------------
    def _follower_fetched(self, state, rid, offset, now):
        """Follower ``rid`` fetched from ``offset`` (its log end): Kafka's ``Replica.updateFetchState`` and
        ``Partition.maybeExpandIsr``; fetch.py calls it for each partition of a follower's fetch (and writes out
        the case of a follower that stays caught up)."""
        leo = self.log.end
        # Kafka's Replica.updateFetchState: caught up if it asked for everything we had now, or at its last fetch.
        if offset >= leo:
            state.caught_up = now
        elif offset >= state.last_fetch_leader_leo and state.last_fetch_time > state.caught_up:
            state.caught_up = state.last_fetch_time
        state.last_fetch_leader_leo = leo
        state.last_fetch_time = now
        moved = state.leo != offset
        state.leo = offset
        if (self.pending_isr is None and rid not in self.isr and offset >= self.hw
                and offset >= self._epoch_start()):
            self._propose_isr(tuple(sorted(self.isr + (rid,))))
        if moved:                       # the high watermark follows the ISR's log end offsets: only a move moves it
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
        followers = self.followers
        for r in (self.isr if self.pending_isr is None else self.maximal_isr()):
            if r != me:
                leo = followers[r].leo if r in followers else -1
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
    def fetch_state(self):
        """What this follower asks its leader for: (fetch offset, current leader epoch, last fetched epoch)."""
        if self.broker.legacy_truncation:
            return self.log.end, self.leader_epoch, -1
        epochs = self.log.epochs
        return self.log.end, self.leader_epoch, epochs[-1][0] if epochs else -1

    def handle_fetched(self, data: P.FetchPartition) -> int:
        """This partition's part of a fetch answer (``AbstractFetcherThread.processFetchRequest`` and
        ``ReplicaFetcherThread.processPartitionData``). Returns FETCHED when the fetch state (log end or epoch)
        changed and the leader must hear of it, UNCHANGED when only the high watermark may have moved, and
        FAILED for an error after which the fetcher leaves the partition out for ``replica.fetch.backoff.ms``
        (``delayPartitions``)."""
        if data.diverging_epoch is not None:
            epoch, end = data.diverging_epoch
            # KIP-279: cut at the smaller of where that epoch ends on the leader and here; repeat until agreed.
            # The leader's high watermark and log start are not taken: the next fetch brings them.
            mine_epoch, mine_end = self.log.end_offset_for_epoch(epoch) if epoch >= 0 else (-1, -1)
            cut = min(end, mine_end) if mine_epoch >= 0 else self.log.start
            self._truncate(cut)
            return FETCHED
        error = data.error
        if error is not None:
            if error == P.OFFSET_OUT_OF_RANGE and 0 <= data.log_end < self.log.end:
                self._truncate(data.log_end)        # pre-KIP-101: cut back to the leader's end and go on
                return FETCHED
            if error == P.OFFSET_OUT_OF_RANGE and data.log_start > self.log.end:
                # behind the leader's log start (retention deleted what we lack): ReplicaFetcherThread's
                # truncateFullyAndStartAt(leader's log start), which rebuilds the producer state
                self.log.truncate_fully_and_start_at(data.log_start)
                self.producers = ProducerState.from_log(self.log)
                self.hw = min(self.hw, self.log.end)
                return FETCHED
            return FAILED
        log = self.log
        changed = UNCHANGED
        if data.batches:
            end = log.end
            for batch in data.batches:
                if batch.end <= end:
                    continue
                if batch.base < end:
                    batch = batch.tail(end)
                log.append(batch)              # (it may start past our end: the leader compacted what was between)
                end = batch.end
                if batch.control is not None:
                    self.producers.record_marker(batch)
                elif batch.producer_id >= 0:
                    self.producers.record(batch)
                changed = FETCHED
        hw = data.high_watermark
        if hw > self.hw:
            self.hw = hw if hw < log.end else log.end
        return changed

    def _truncate(self, offset):
        cut = offset < self.log.end
        self.log.truncate(offset)
        if cut:
            self.producers = ProducerState.from_log(self.log)
        self.hw = min(self.hw, self.log.end)
        self.broker.cluster.check_invariants(self.tp)
