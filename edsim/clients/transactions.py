"""The transactional producer's side of KIP-98 (Java's ``TransactionManager``).

``init_transactions`` asks the transaction coordinator for the producer id and a new epoch (fencing any older
instance with the same transactional.id); ``begin_transaction`` is local; before the first batch to a partition
goes out the partition is added to the transaction (AddPartitionsToTxn); ``send_offsets_to_transaction`` adds the
group's offsets (AddOffsetsToTxn, then TxnOffsetCommit to the group coordinator, fenced by the group generation,
KIP-447); ``commit_transaction`` flushes, then EndTxn; ``abort_transaction`` fails what was not sent, waits for
what is in flight, then EndTxn(abort).

History: the sends of a transaction are recorded when it ends, as Jepsen records a transaction: ``ok`` with
their offsets when it commits, ``fail`` (with the offsets they took, error TRANSACTION_ABORTED) when it aborts,
``info`` when the producer crashed before knowing. One ``txn`` row per transaction carries the outcome; the sends
and the polls made inside it share its id in the ``txn`` column.
"""
from __future__ import annotations

import numpy as np

from ..kafka import protocol as P

COORDINATOR_MOVED = frozenset({P.NOT_COORDINATOR, P.COORDINATOR_NOT_AVAILABLE, P.COORDINATOR_LOAD_IN_PROGRESS,
                               P.NETWORK_EXCEPTION, P.REQUEST_TIMED_OUT})
FENCED = frozenset({P.PRODUCER_FENCED, P.INVALID_PRODUCER_EPOCH, P.INVALID_PRODUCER_ID_MAPPING})
GROUP_FENCED = frozenset({P.ILLEGAL_GENERATION, P.UNKNOWN_MEMBER_ID, P.FENCED_INSTANCE_ID,
                          P.REBALANCE_IN_PROGRESS})
CONCURRENT_RETRY = 0.02     # the Java client retries CONCURRENT_TRANSACTIONS after 20 ms


class KafkaError(Exception):
    """A send or a request that failed for good; ``code`` is Kafka's error name (Java: the ``Errors`` value
    behind a ``KafkaException``), ``message`` what failed.

    ``args`` is ``(code, message)`` and the text is built in ``__str__``: SimPy hands a failed event to the
    waiting process as a copy made with ``type(e)(*e.args)`` (``simpy.events.Process._resume``), so the
    constructor's arguments must be the args for the copy to keep ``code``."""

    def __init__(self, code, message=""):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{self.code}: {self.message}" if self.message else str(self.code)


class ProducerFencedException(KafkaError):
    """Another producer with the same transactional.id has a newer epoch, or the coordinator aborted this one's
    transaction after transaction.timeout.ms: this instance can do nothing more (Java: fatal)."""


class TransactionStateError(KafkaError):
    """A transactional method called in the wrong state (Java: IllegalStateException)."""


class GroupMetadata(tuple):
    """What ``Consumer.group_metadata()`` returns and ``send_offsets_to_transaction`` needs (KIP-447)."""
    __slots__ = ()

    def __new__(cls, group_id, generation, member_id):
        return super().__new__(cls, (group_id, generation, member_id))

    group_id = property(lambda self: self[0])
    generation = property(lambda self: self[1])
    member_id = property(lambda self: self[2])


class TransactionManager:
    def __init__(self, producer, transactional_id: str, timeout: float):
        self.producer = producer
        self.transactional_id = transactional_id
        self.timeout = timeout
        self.reset()

    def reset(self):
        """A new session: nothing known (after a crash, or before init_transactions)."""
        self.state = "uninitialized"
        self.coordinator = -1
        self.partitions: set = set()     # added to the open transaction
        self.to_add: set = set()
        self.adding = False
        self.offsets_added = False
        self.op = None                   # history id of the open transaction
        self.began = 0.0
        self.done: list = []             # finished sends of the open transaction, recorded when it ends
        self.error = None                # the abortable (or fatal) error of the open transaction
        self.bump_epoch = False          # a batch expired: its sequence has a gap (KIP-360)
        self._waiters: list = []

    # ---- waiting inside the application's SimPy process --------------------------------------------------
    def _wait(self, start):
        """SimPy generator: ``start(callback)`` sends a request; returns what the callback got. A crash of the
        producer fails the wait with KafkaError('CRASHED')."""
        env = self.producer.world.env
        event = env.event()
        event.defused = True
        self._waiters.append(event)
        start(lambda result: event.succeed(result) if not event.triggered else None)
        try:
            return (yield event)
        finally:
            if event in self._waiters:
                self._waiters.remove(event)

    def crashed(self):
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            if not event.triggered:
                event.fail(KafkaError("CRASHED", "the producer's process crashed"))

    def _flush(self):
        """SimPy generator: until every record handed to send() in this transaction has an outcome."""
        producer = self.producer
        producer._pump()
        while producer.outstanding > 0:
            yield from self._wait(lambda done: producer.flush_waiters.append(done))

    # ---- requests to the coordinators ---------------------------------------------------------------------
    def _find(self, key, key_type, callback):
        producer = self.producer
        bid = producer.least_loaded_node()
        if bid is None or not producer.ready(bid):
            return producer.call_later(producer.retry_backoff, lambda: callback(-1))

        def answered(response):
            ok = isinstance(response, P.FindCoordinatorResponse) and response.error is None
            if isinstance(response, P.FindCoordinatorResponse) and response.error in P.AUTHORIZATION_FAILED:
                return callback(response.error)         # refused for good (GROUP_AUTHORIZATION_FAILED): no retry
            callback(response.coordinator if ok else -1)

        producer.request(bid, P.FindCoordinatorRequest(0, key, key_type=key_type), answered)

    def _request(self, make, callback, key=None):
        """Send ``make()`` to the transaction coordinator (or, with ``key``, to that group's coordinator),
        finding it first and trying again while it moves, loads or is busy ending the last transaction."""
        producer = self.producer
        group = key is not None
        target = {"bid": -1 if group else self.coordinator}

        def attempt():
            bid = target["bid"]
            if bid < 0:
                return self._find(key if group else self.transactional_id, "group" if group else "transaction",
                                  found)
            if not producer.ready(bid):
                if producer.connection_failed(bid):
                    # Java's Sender (awaitNodeReady fails, maybeFindCoordinatorAndRetry): a coordinator it cannot
                    # connect to is looked up again, not retried for ever: it may be dead and its partition moved
                    target["bid"] = -1
                    if not group:
                        self.coordinator = -1
                return producer.call_later(producer.retry_backoff, attempt)
            producer.request(bid, make(), answered)

        def found(bid):
            if isinstance(bid, str):                     # the lookup was refused: the request fails with it
                return callback(P.TxnResponse(0, bid))
            target["bid"] = bid
            if not group:
                self.coordinator = bid
            if bid < 0:
                return producer.call_later(producer.retry_backoff, attempt)
            attempt()

        def answered(response):
            error = response if isinstance(response, str) else response.error
            if error in COORDINATOR_MOVED:
                target["bid"] = -1
                if not group:
                    self.coordinator = -1
                return producer.call_later(producer.retry_backoff, attempt)
            if error == P.CONCURRENT_TRANSACTIONS:
                return producer.call_later(CONCURRENT_RETRY, attempt)
            callback(response)

        attempt()

    # ---- the application's API ---------------------------------------------------------------------------
    def init_transactions(self):
        producer = self.producer
        if self.state not in ("uninitialized", "fatal_error", "ready"):
            raise TransactionStateError("INVALID_TXN_STATE",
                                        f"init_transactions() called while a transaction is {self.state}")
        if self.state != "uninitialized":        # a fresh session: as a new instance with the same id
            self._abandon()
            producer._reset_producer()
        self.state = "initializing"
        response = yield from self._wait(lambda done: self._request(
            lambda: P.InitProducerIdRequest(0, transactional_id=self.transactional_id, timeout=self.timeout),
            done))
        if response.error is not None:
            self.state = "fatal_error"
            if response.error == "INVALID_TRANSACTION_TIMEOUT":
                raise KafkaError(response.error, f"init_transactions() failed: transaction.timeout.ms="
                                 f"{self.timeout * 1000:g} is above the brokers' transaction.max.timeout.ms")
            raise KafkaError(response.error, "init_transactions() failed")
        producer.new_epoch(response.producer_id, response.producer_epoch)
        self.state = "ready"

    def begin_transaction(self):
        if self.state != "ready":
            raise TransactionStateError("INVALID_TXN_STATE", self._why_not("begin_transaction()"))
        self.state = "in_transaction"
        self.op = self.producer.world.history.new_op()
        self.began = self.producer.now
        self.partitions, self.to_add, self.offsets_added, self.error, self.done = set(), set(), False, None, []

    def _why_not(self, what):
        if self.state == "uninitialized":
            return f"{what} needs init_transactions() first"
        if self.state == "fatal_error":
            return f"{what} is not allowed: this producer was fenced ({self.error}); call init_transactions()"
        return f"{what} is not allowed while the producer is {self.state.replace('_', ' ')}"

    def check_send(self):
        if self.state not in ("in_transaction", "abortable_error"):
            raise TransactionStateError("INVALID_TXN_STATE", self._why_not("send()") if self.state != "ready"
                                        else "send() outside a transaction: call begin_transaction() first")

    def send_offsets_to_transaction(self, offsets: dict, group_metadata: GroupMetadata):
        """AddOffsetsToTxn, then TxnOffsetCommit: the consumer's offsets commit with the transaction or not."""
        self._raise_if_failed("send_offsets_to_transaction()")
        producer = self.producer
        group = group_metadata.group_id
        response = yield from self._wait(lambda done: self._request(lambda: P.AddOffsetsToTxnRequest(
            0, self.transactional_id, producer.producer_id, producer.producer_epoch, group), done))
        self._check_response(response.error, "AddOffsetsToTxn")
        self.offsets_added = True
        response = yield from self._wait(lambda done: self._request(lambda: P.TxnOffsetCommitRequest(
            0, group, self.transactional_id, producer.producer_id, producer.producer_epoch,
            group_metadata.generation, group_metadata.member_id, dict(offsets)), done, key=group))
        self._check_response(response.error, "TxnOffsetCommit")

    def commit_transaction(self):
        self._raise_if_failed("commit_transaction()")
        self.state = "committing"
        yield from self._flush()
        if self.error is not None:
            self.state = "fatal_error" if self.error in FENCED else "abortable_error"
            self._raise_if_failed("commit_transaction()")
        if self.partitions or self.offsets_added:
            response = yield from self._wait(lambda done: self._end(True, done))
            if response.error is not None:
                fenced = response.error in FENCED
                self.state = "fatal_error" if fenced else "abortable_error"
                self.error = response.error
                if fenced:
                    self._ended("fail", P.PRODUCER_FENCED)   # the coordinator aborted it (timeout, new instance)
                    raise ProducerFencedException(response.error, "the transaction was aborted by the coordinator")
                raise KafkaError(response.error, "commit_transaction() failed; abort the transaction")
            self._new_epoch(response.producer_epoch)
        self._ended("ok")
        self.state = "ready"

    def abort_transaction(self):
        if self.state == "fatal_error":
            self._abandon()
            raise ProducerFencedException(self.error or P.PRODUCER_FENCED, "a fenced producer cannot abort; "
                                          "the coordinator aborts its transaction")
        if self.state not in ("in_transaction", "abortable_error", "committing"):
            raise TransactionStateError("INVALID_TXN_STATE", self._why_not("abort_transaction()"))
        self.state = "aborting"
        self.producer.drop_unsent(P.TRANSACTION_ABORTED)
        yield from self._flush()
        if self.partitions or self.offsets_added:
            response = yield from self._wait(lambda done: self._end(False, done))
            if response.error is not None and response.error not in FENCED:
                self.state = "abortable_error"
                raise KafkaError(response.error, "abort_transaction() failed")
            if response.error is None:
                self._new_epoch(response.producer_epoch)
        self._ended("fail", P.TRANSACTION_ABORTED)
        if self.bump_epoch and self.producer.producer_epoch >= 0:
            # KIP-360: a batch expired, so its sequence has a gap; a new epoch starts sequences again
            self.bump_epoch = False
            self.state = "initializing"
            response = yield from self._wait(lambda done: self._request(
                lambda: P.InitProducerIdRequest(0, transactional_id=self.transactional_id, timeout=self.timeout),
                done))
            if response.error is None:
                self.producer.new_epoch(response.producer_id, response.producer_epoch)
        self.state = "ready"

    def _end(self, commit, done):
        producer = self.producer
        self._request(lambda: P.EndTxnRequest(0, self.transactional_id, producer.producer_id,
                                              producer.producer_epoch, commit), done)

    def _new_epoch(self, epoch):
        """KIP-890: EndTxn answers with the bumped epoch; sequences start again from 0."""
        if epoch is not None and epoch > self.producer.producer_epoch:
            self.producer.new_epoch(self.producer.producer_id, epoch)

    def _abandon(self):
        """A fenced producer's open transaction: the coordinator aborts it (it fenced us to do so)."""
        if self.op is not None:
            self._ended("fail", self.error if self.error in FENCED else P.PRODUCER_FENCED)

    def _raise_if_failed(self, what):
        if self.state == "fatal_error":
            self._abandon()
            raise ProducerFencedException(self.error or P.PRODUCER_FENCED, f"{what}: this producer was fenced")
        if self.state == "abortable_error":
            raise KafkaError(self.error, f"{what}: the transaction failed; call abort_transaction()")
        if self.state != "in_transaction":
            raise TransactionStateError("INVALID_TXN_STATE", self._why_not(what))

    def _check_response(self, error, what):
        if error is None:
            return
        self.error = error
        if error in FENCED:
            self.state = "fatal_error"
            raise ProducerFencedException(error, f"{what} was refused")
        self.state = "abortable_error"
        if error in GROUP_FENCED:
            from .membership import CommitFailedException
            raise CommitFailedException(f"{what} failed with {error}: the group has moved to a newer generation "
                                        "(KIP-447); abort the transaction")
        raise KafkaError(error, f"{what} failed; abort the transaction")

    # ---- hooks from the producer's sender -----------------------------------------------------------------
    def can_send(self, tp) -> bool:
        """May batches for ``tp`` go out? Only once the partition is in the transaction (AddPartitionsToTxn)."""
        if self.state not in ("in_transaction", "committing"):
            return False
        if tp in self.partitions:
            return True
        self.to_add.add(tp)
        if not self.adding:
            self._add_partitions()
        return False

    def _add_partitions(self):
        producer = self.producer
        adding = tuple(sorted(self.to_add))
        self.adding = True

        def answered(response):
            self.adding = False
            if response.error is None:
                self.partitions.update(adding)
                self.to_add -= set(adding)
            else:
                self.failed(response.error)
                if response.error in P.AUTHORIZATION_FAILED:
                    # Java: an abortable error (TopicAuthorizationException); the Sender fails the batches not yet
                    # sent (RecordAccumulator.abortUndrainedBatches) instead of asking again
                    self.to_add.clear()
                    if self.state == "committing":
                        self.state = "abortable_error"
                    producer.drop_unsent(response.error)
            producer._pump()

        self._request(lambda: P.AddPartitionsToTxnRequest(0, self.transactional_id, producer.producer_id,
                                                          producer.producer_epoch, adding), answered)

    def failed(self, error):
        """A send of the open transaction failed for good: the transaction can only abort (or, fenced, nothing)."""
        if self.state in ("in_transaction", "committing", "abortable_error"):
            if error in FENCED:
                self.state, self.error = "fatal_error", error
                self.producer.drop_unsent(error)
            elif self.error is None:
                self.error = error
                if self.state == "in_transaction":
                    self.state = "abortable_error"

    def defer(self, tp, values, keys, times, type_, offsets, error) -> bool:
        """Hold a finished send until its transaction ends; False outside a transaction."""
        if self.op is None:
            return False
        self.done.append((tp, values, keys, times, type_, offsets, error))
        if type_ != "ok":
            self.failed(error or "UNKNOWN")
        return True

    def _ended(self, outcome, error=""):
        """Record the transaction: its sends with the outcome, then one ``txn`` row."""
        producer = self.producer
        history = producer.world.history
        now = producer.now
        n = 0
        tps = set()
        for tp, values, keys, times, type_, offsets, err in self.done:
            n += len(values)
            tps.add(tp)
            if outcome == "ok":
                final, where, why = type_, offsets, err
            elif outcome == "fail":
                final, where, why = "fail", offsets if type_ == "ok" else -1, error if type_ == "ok" else err
            else:
                final, where, why = ("info" if type_ in ("ok", "info") else "fail"), -1, err or error
            history.sends(now, producer.name, final, tp[0], tp[1], values, keys, times, where, why, txn=self.op)
            for listener in producer.outcome_listeners:
                listener(final, values)
        verb = {"ok": "committed", "fail": "aborted", "info": "outcome unknown"}[outcome]
        history.event(now, producer.name, "txn", type_=outcome, value=n, op=self.op, txn=self.op,
                      invoke_time=self.began, error=error if outcome != "ok" else "",
                      detail=f"{verb}: {n} records to {len(tps)} partitions"
                             + (", with consumer offsets" if self.offsets_added else ""))
        self.op, self.done = None, []

    def on_crash(self):
        if self.op is not None:
            self._ended("info", "CRASHED")
        self.crashed()
