"""The transaction coordinator (Kafka's TransactionCoordinator), one per broker.

A transactional.id belongs to the partition ``abs(hash(id)) % transaction.state.log.num.partitions`` of the
internal topic ``__transaction_state``; the leader of that partition coordinates it, and every state change is a
record written there with acks=all, so a new leader resumes where the old one stopped: a transaction that was
prepared before a crash is still committed (KIP-98's two-phase commit).

The life of a transaction: InitProducerId gives the producer its id and a new epoch, which fences any older
instance with the same transactional.id and aborts what it left open; AddPartitionsToTxn (and AddOffsetsToTxn
for the group's offsets partition) makes it Ongoing; EndTxn writes PrepareCommit or PrepareAbort, answers the
producer, then writes a marker to every partition of the transaction (WriteTxnMarkers) and, once all are
written, CompleteCommit or CompleteAbort. An Ongoing transaction older than transaction.timeout.ms is aborted
with a bumped epoch, which fences its producer.

With ``transaction.version`` 2 (KIP-890, Kafka 4.0's default) EndTxn bumps the producer epoch of every
transaction and the markers carry the new epoch, so a write of the old transaction that arrives late is refused;
with version 1 the epoch stays and such a write can land after the marker, in the next transaction.
"""
from __future__ import annotations

import numpy as np

from . import protocol as P
from .coordinator import OFFSETS_TOPIC, leading_replica, offsets_partition
from .log import Batch

TXN_TOPIC = "__transaction_state"
MARKER_RETRY = 0.1          # retry.backoff.ms of the coordinator's marker channel
MARKER_RESEND = 30.0        # a marker request unanswered this long (request.timeout.ms) is sent again


class TxnMetadata:
    __slots__ = ("tid", "pid", "epoch", "timeout", "state", "partitions", "started", "markers", "pending")

    def __init__(self, tid, pid, epoch, timeout):
        self.tid, self.pid, self.epoch, self.timeout = tid, pid, epoch, timeout
        self.state = "Empty"
        self.partitions: set = set()
        self.started = 0.0
        self.markers: dict = {}          # tp -> [corr, leader, retry at] while markers are being written
        self.pending = False             # a state change is being written: other requests wait

    def record(self):
        return ("txn", self.tid, self.pid, self.epoch, self.timeout, self.state, tuple(sorted(self.partitions)),
                self.started)


class TransactionCoordinator:
    def __init__(self, broker):
        self.broker = broker
        self.txns: dict[str, TxnMetadata] = {}
        config = broker.cluster.config
        self.version = config["transaction.version"]
        self.cleanup_interval = config.seconds("transaction.abort.timed.out.transaction.cleanup.interval.ms")
        self.max_timeout = config.seconds("transaction.max.timeout.ms")
        self._next_cleanup = broker.now + self.cleanup_interval
        self._corr = 0
        self._markers: dict[int, tuple] = {}     # corr -> (txn, tp)

    @property
    def now(self):
        return self.broker.now

    # ---- ownership: follows the leadership of __transaction_state partitions -----------------------------
    def _replica(self, tid):
        return leading_replica(self.broker, TXN_TOPIC, tid)

    def became_leader(self, replica):
        """Load the transactions of this partition from its log; finish any that were being prepared."""
        partitions = self.broker.cluster.topics[TXN_TOPIC]["partitions"]
        for tid in [t for t in self.txns if offsets_partition(t, partitions) == replica.tp[1]]:
            del self.txns[tid]
        loaded = {}
        for batch in replica.log.batches:
            for record in batch.payloads or ():
                _, tid, pid, epoch, timeout, state, tps, started = record
                txn = loaded[tid] = TxnMetadata(tid, pid, epoch, timeout)
                txn.state, txn.partitions, txn.started = state, set(tps), started
        self.txns.update(loaded)
        for txn in loaded.values():
            if txn.state in ("PrepareCommit", "PrepareAbort"):
                self._send_markers(txn)

    def lost_leadership(self, replica):
        partitions = self.broker.cluster.topics[TXN_TOPIC]["partitions"]
        for tid in [t for t in self.txns if offsets_partition(t, partitions) == replica.tp[1]]:
            del self.txns[tid]

    def _write(self, txn, done):
        """Persist the transaction's state with acks=all; ``done(error)``."""
        replica = self._replica(txn.tid)
        if replica is None:
            return done(P.NOT_COORDINATOR)
        batch = Batch(-1, -1, np.full(1, -1, np.int64), np.full(1, -1, np.int64), [txn.record()])
        txn.pending = True

        def written(error, base=-1):
            txn.pending = False
            done(error)

        replica.handle_produce(batch, "all", 5.0, written)

    # ---- requests from producers ------------------------------------------------------------------------
    def handle(self, message, send):
        kind = type(message)
        tid = message.transactional_id
        if self._replica(tid) is None:
            if kind is P.InitProducerIdRequest:
                return send(P.InitProducerIdResponse(message.corr, -1, -1, P.NOT_COORDINATOR))
            return send(P.TxnResponse(message.corr, P.NOT_COORDINATOR))
        if kind is P.InitProducerIdRequest:
            return self._init_producer_id(message, send)
        txn = self.txns.get(tid)
        if txn is None or txn.pid != message.producer_id:
            return send(P.TxnResponse(message.corr, P.INVALID_PRODUCER_ID_MAPPING))
        if txn.pending:
            return send(P.TxnResponse(message.corr, P.CONCURRENT_TRANSACTIONS))
        if kind is P.EndTxnRequest:
            return self._end(txn, message, send)
        if message.producer_epoch < txn.epoch:
            return send(P.TxnResponse(message.corr, P.PRODUCER_FENCED))
        if txn.state in ("PrepareCommit", "PrepareAbort"):
            return send(P.TxnResponse(message.corr, P.CONCURRENT_TRANSACTIONS))
        if kind is P.AddPartitionsToTxnRequest:
            new = set(message.partitions)
        else:
            n = self.broker.cluster.topics[OFFSETS_TOPIC]["partitions"]
            new = {(OFFSETS_TOPIC, offsets_partition(message.group, n))}
        if txn.state == "Ongoing" and new <= txn.partitions:
            return send(P.TxnResponse(message.corr, None))
        before = (txn.state, set(txn.partitions), txn.started)
        if txn.state != "Ongoing":
            txn.state, txn.partitions, txn.started = "Ongoing", set(), self.now
        txn.partitions |= new

        def stored(error):
            if error is not None:
                txn.state, txn.partitions, txn.started = before
            send(P.TxnResponse(message.corr, None if error is None else P.COORDINATOR_NOT_AVAILABLE))

        self._write(txn, stored)

    def _init_producer_id(self, req, send):
        tid = req.transactional_id
        if req.timeout > self.max_timeout:
            return send(P.InitProducerIdResponse(req.corr, -1, -1, "INVALID_TRANSACTION_TIMEOUT"))
        txn = self.txns.get(tid)
        if txn is None:
            txn = TxnMetadata(tid, self.broker.cluster.allocate_producer_id(), 0, req.timeout)
            self.txns[tid] = txn
            fresh = True
        else:
            fresh = False
            if txn.pending or txn.state in ("PrepareCommit", "PrepareAbort"):
                return send(P.InitProducerIdResponse(req.corr, -1, -1, P.CONCURRENT_TRANSACTIONS))
            if txn.state == "Ongoing":
                # A new instance with the same id: fence the old one and abort what it left open; the new
                # instance asks again once the abort is complete.
                self._prepare(txn, commit=False, bump=True, reply=None)
                return send(P.InitProducerIdResponse(req.corr, -1, -1, P.CONCURRENT_TRANSACTIONS))
            txn.epoch += 1
            txn.state, txn.partitions = "Empty", set()
        txn.timeout = req.timeout

        def stored(error):
            if error is not None:
                if fresh:
                    self.txns.pop(tid, None)
                return send(P.InitProducerIdResponse(req.corr, -1, -1, P.COORDINATOR_NOT_AVAILABLE))
            send(P.InitProducerIdResponse(req.corr, txn.pid, txn.epoch))

        self._write(txn, stored)

    def _end(self, txn, req, send):
        decision = "Commit" if req.commit else "Abort"
        bumped = self.version >= 2 and req.producer_epoch == txn.epoch - 1
        if txn.state in ("Prepare" + decision, "Complete" + decision) and (
                req.producer_epoch == txn.epoch or bumped):
            # a retry of an EndTxn whose answer was lost, or that is still writing markers
            error = P.CONCURRENT_TRANSACTIONS if txn.state.startswith("Prepare") else None
            return send(P.TxnResponse(req.corr, error, txn.epoch))
        if req.producer_epoch < txn.epoch:
            return send(P.TxnResponse(req.corr, P.PRODUCER_FENCED))
        if txn.state != "Ongoing":
            return send(P.TxnResponse(req.corr, P.INVALID_TXN_STATE))
        self._prepare(txn, req.commit, bump=self.version >= 2,
                      reply=lambda error: send(P.TxnResponse(req.corr, error, txn.epoch)))

    def _prepare(self, txn, commit, bump, reply):
        """Phase one: PrepareCommit / PrepareAbort is written; then the producer hears, then the markers go."""
        before = (txn.state, txn.epoch)
        txn.state = "PrepareCommit" if commit else "PrepareAbort"
        if bump:
            txn.epoch += 1

        def stored(error):
            if error is not None:
                txn.state, txn.epoch = before
                if reply is not None:
                    reply(P.COORDINATOR_NOT_AVAILABLE)
                return
            if reply is not None:
                reply(None)
            self._send_markers(txn)

        self._write(txn, stored)

    # ---- phase two: markers -----------------------------------------------------------------------------
    def _send_markers(self, txn):
        txn.markers = {tp: [None, -1, self.now] for tp in sorted(txn.partitions)}   # sorted: no hash order
        if not txn.markers:
            return self._complete(txn)
        for tp in list(txn.markers):
            self._send_marker(txn, tp)

    def _send_marker(self, txn, tp):
        entry = txn.markers[tp]
        state = self.broker.metadata.get(tp)
        if state is None or state.leader < 0:
            entry[2] = self.now + MARKER_RETRY             # no leader now: try again later
            return
        self._corr += 1
        entry[0], entry[1], entry[2] = self._corr, state.leader, self.now + MARKER_RESEND
        self._markers[self._corr] = (txn, tp)
        self.broker.send_to_broker(state.leader, P.WriteTxnMarkersRequest(
            self._corr, tp, txn.pid, txn.epoch, txn.state == "PrepareCommit", reply_to=self.broker.name))

    def marker_written(self, response: P.WriteTxnMarkersResponse):
        txn, tp = self._markers.pop(response.corr, (None, None))
        if txn is None or self.txns.get(txn.tid) is not txn or tp not in txn.markers:
            return
        if txn.markers[tp][0] != response.corr:
            return
        if response.error is None:
            del txn.markers[tp]
            if not txn.markers:
                self._complete(txn)
        elif response.error == P.INVALID_PRODUCER_EPOCH:
            del txn.markers[tp]                            # a newer epoch already ended it there
            if not txn.markers:
                self._complete(txn)
        else:
            txn.markers[tp][0] = None
            txn.markers[tp][2] = self.now + MARKER_RETRY

    def _complete(self, txn):
        txn.state = "CompleteCommit" if txn.state == "PrepareCommit" else "CompleteAbort"
        txn.partitions = set()
        self._write(txn, lambda error: None)

    # ---- time -------------------------------------------------------------------------------------------
    def all_aborted_by(self) -> float:
        """When the cleanup will have aborted every Ongoing transaction this coordinator owns, if none ends
        before (0.0 when none is open)."""
        return max((txn.started + txn.timeout + self.cleanup_interval for txn in self.txns.values()
                    if txn.state == "Ongoing" and self._replica(txn.tid)), default=0.0)

    def tick(self):
        now = self.now
        for txn in list(self.txns.values()):
            for tp, entry in list(txn.markers.items()):
                # again when due, or at once when the partition has a new leader (the old one may be gone)
                state = self.broker.metadata.get(tp) if entry[0] is not None else None
                if now >= entry[2] or (state is not None and state.leader != entry[1]):
                    self._send_marker(txn, tp)
        if now >= self._next_cleanup:
            # transaction.abort.timed.out.transaction.cleanup.interval.ms: abort (and fence) stale transactions
            self._next_cleanup = now + self.cleanup_interval
            for txn in list(self.txns.values()):
                if txn.state == "Ongoing" and now - txn.started > txn.timeout and self._replica(txn.tid):
                    self._prepare(txn, commit=False, bump=True, reply=None)
