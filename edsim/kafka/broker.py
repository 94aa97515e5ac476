"""A broker: hosts replicas, answers clients, follows the controller's metadata, heartbeats to stay unfenced."""
from __future__ import annotations

from ..engine import Node
from ..engine.network import Disconnected
from . import protocol as P
from .acl import ANONYMOUS, BROKER_PRINCIPAL
from .cleaner import Cleaner
from .coordinator import OFFSETS_TOPIC, GroupCoordinator, offsets_partition
from .fetch import FetchManager
from .fetcher import ReplicaFetcher
from .transactions import TXN_TOPIC, TransactionCoordinator

INF = float("inf")
TICK = 0.1   # seconds between the broker's housekeeping passes (purgatory expiry, ISR checks, checkpoints)
GROUP_REQUESTS = (P.JoinGroupRequest, P.SyncGroupRequest, P.HeartbeatRequest, P.LeaveGroupRequest,
                  P.OffsetCommitRequest, P.OffsetFetchRequest, P.TxnOffsetCommitRequest)
TXN_REQUESTS = (P.InitProducerIdRequest, P.AddPartitionsToTxnRequest, P.AddOffsetsToTxnRequest, P.EndTxnRequest)
AUTHORIZED = (P.ProduceRequest, P.ListOffsetsRequest, P.FindCoordinatorRequest,
              P.InitProducerIdRequest) + GROUP_REQUESTS + TXN_REQUESTS
DENIED_RESPONSE = {P.JoinGroupRequest: P.JoinGroupResponse, P.SyncGroupRequest: P.SyncGroupResponse,
                   P.HeartbeatRequest: P.HeartbeatResponse, P.LeaveGroupRequest: P.LeaveGroupResponse,
                   P.OffsetCommitRequest: P.OffsetCommitResponse, P.OffsetFetchRequest: P.OffsetFetchResponse,
                   P.TxnOffsetCommitRequest: P.OffsetCommitResponse, P.AddPartitionsToTxnRequest: P.TxnResponse,
                   P.AddOffsetsToTxnRequest: P.TxnResponse, P.EndTxnRequest: P.TxnResponse}
REFUSED_WHILE_STARTING = (P.ProduceRequest, P.FetchRequest, P.MetadataRequest, P.ListOffsetsRequest,
                          P.ApiVersionsRequest, P.FindCoordinatorRequest,
                          P.WriteTxnMarkersRequest) + GROUP_REQUESTS + TXN_REQUESTS


class Broker(Node):
    kind = "broker"
    principal = BROKER_PRINCIPAL          # brokers talk to each other as a super user (acl.py)

    def __init__(self, world, cluster, broker_id: int):
        super().__init__(world, f"broker-{broker_id}")
        self.id = broker_id
        self.cluster = cluster
        config = cluster.config
        self.legacy_truncation = config["edsim.legacy.truncation"] == "high-watermark"
        self.fetch_wait = config.seconds("replica.fetch.wait.max.ms")
        self.fetch_min_bytes = config["replica.fetch.min.bytes"]
        self.fetch_response_max_bytes = config["replica.fetch.response.max.bytes"]
        self.fetch_backoff = config.seconds("replica.fetch.backoff.ms")
        self.fetch_timeout = config.seconds("replica.socket.timeout.ms")
        self.lag_max = config.seconds("replica.lag.time.max.ms")
        self.checkpoint_interval = config.seconds("replica.high.watermark.checkpoint.interval.ms")
        self.heartbeat_interval = config.seconds("broker.heartbeat.interval.ms")
        self.controller_timeout = config.seconds("controller.socket.timeout.ms")
        self.dirty_expire = config.seconds("edsim.os.dirty.expire.ms")
        flush_check = config["log.flush.scheduler.interval.ms"]
        self.flush_check = flush_check / 1000.0 if flush_check is not None else None
        self.max_fetch_records = 1 << 16
        self.cleaner = Cleaner(self)
        self.authorizer = cluster.acls if cluster.acls.enabled else None     # None: every request is allowed
        self.replicas: dict[tuple, object] = {}      # on disk: the replicas assigned here
        self._corr = 0
        self.fetch_session_ids = 0                   # never reset: a session id outlives no crash, nor is reused
        self._reset_memory()
        self.serving = True                          # a restarted broker serves once it has the metadata
        self._start_loops()

    # ---- lifecycle --------------------------------------------------------------------------------------
    def _reset_memory(self):
        self.metadata: dict[tuple, P.PartitionState] = {}
        self.metadata_offset = 0
        self.alter_pending: dict[int, object] = {}
        self.next_expiry = INF          # the earliest deadline of a request held in a purgatory
        self.fetchers: dict[int, ReplicaFetcher] = {}   # leader id -> the fetcher of our followers of its partitions
        self.fetch_manager = FetchManager(self)         # fetches we answer as leader: sessions and purgatory
        self.coordinator = GroupCoordinator(self)
        self.txn_coordinator = TransactionCoordinator(self)
        self._next_isr_check = self.now + self.lag_max / 2
        self._next_checkpoint = self.now + self.checkpoint_interval
        for replica in self.replicas.values():
            replica.reset_memory()

    def _start_loops(self):
        self.call_later(TICK, self._tick)
        self.call_later(self.heartbeat_interval, self._heartbeat)
        self.cleaner.start()
        if self.flush_check is not None:
            self.call_later(self.flush_check, self._flush_dirty_logs)

    def on_crash(self):
        for replica in self.replicas.values():
            replica.reset_memory()

    def on_power_loss(self):
        """The page cache is gone: every log keeps only what was flushed or written back (Log.lose_unflushed)."""
        lost = sum(replica.log.lose_unflushed(self.now, self.dirty_expire) for replica in self.replicas.values())
        self.world.history.event(self.now, self.name, "crash", type_="info",
                                 detail=f"power loss: {lost} records not yet on disk are gone")

    def _flush_dirty_logs(self):
        """Kafka's log flusher (LogManager.flushDirtyLogs): every log.flush.scheduler.interval.ms, fsync the logs
        whose last flush is flush.ms old."""
        now = self.now
        for replica in self.replicas.values():
            log = replica.log
            if replica.flush_interval is not None and log.end > log.flushed and now - log.flushed_at >= replica.flush_interval:
                log.flush()
        self.call_later(self.flush_check, self._flush_dirty_logs)

    def on_restart(self):
        self._reset_memory()
        self.serving = False
        self._start_loops()
        # A restarted broker registers anew (a new incarnation); the controller fences the old one.
        self.send(self.cluster.controller.name, P.BrokerRegistration(self.id, self.incarnation))

    def next_corr(self) -> int:
        self._corr += 1
        return self._corr

    # ---- sending ----------------------------------------------------------------------------------------
    def send(self, dst: str, message):
        self.world.network.send(self, dst, message)

    def send_to_broker(self, broker_id: int, message):
        self.send(f"broker-{broker_id}", message)

    # ---- periodic work ----------------------------------------------------------------------------------
    def _tick(self):
        now = self.now
        if now >= self.next_expiry:
            earliest = self.fetch_manager.expire(now)
            for replica in self.replicas.values():
                if replica.waiting_produce:
                    left = replica.expire(now)
                    if left is not None and left < earliest:
                        earliest = left
            self.next_expiry = earliest
        if now >= self._next_isr_check:
            self._next_isr_check = now + self.lag_max / 2
            for replica in self.replicas.values():
                replica.shrink_isr(now, self.lag_max)
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + self.checkpoint_interval
            for replica in self.replicas.values():
                replica.hw_checkpoint = replica.hw
        if self.coordinator.groups:
            self.coordinator.tick()
        if self.txn_coordinator.txns:
            self.txn_coordinator.tick()
        for fetcher in self.fetchers.values():
            if fetcher.corr is not None and now - fetcher.sent_at > self.fetch_timeout + self.fetch_wait:
                fetcher.timed_out()                             # replica.socket.timeout.ms passed: ask again
        for replica in self.replicas.values():
            if replica.pending_isr is not None and now - replica.alter_sent > self.heartbeat_interval:
                replica.alter_sent = now                        # AlterPartition is retried until answered
                self.send_alter_partition(replica)
        self.call_later(TICK, self._tick)

    def _heartbeat(self):
        """BrokerLifecycleManager's heartbeat. Its channel to the controller (NodeToControllerChannelManager) has a
        request timeout of controller.socket.timeout.ms; a request unanswered that long closes the connection, and
        the next heartbeat goes on a new one, so a broker cut off from the controller is heard again soon after the
        heal, not at the old connection's next TCP retransmission. Heartbeats have no response here: a heartbeat
        unanswered is one the cut connection still holds."""
        controller = self.cluster.controller.name
        network = self.world.network
        since = network.holding_since((self.name, controller))
        if since is not None and self.now - since >= self.controller_timeout:
            network.reconnect(self.name, controller)
        self.send(self.cluster.controller.name, P.BrokerHeartbeat(self.id, self.incarnation, self.metadata_offset))
        self.call_later(self.heartbeat_interval, self._heartbeat)

    def wait_until(self, deadline):
        """A request is held until ``deadline`` at the latest: the housekeeping pass looks at the purgatories
        from then on."""
        if deadline < self.next_expiry:
            self.next_expiry = deadline

    def send_alter_partition(self, replica):
        corr = self.next_corr()
        self.alter_pending[corr] = replica
        self.send(self.cluster.controller.name, P.AlterPartitionRequest(
            corr, self.id, replica.tp, replica.leader_epoch, replica.partition_epoch, replica.pending_isr))

    # ---- receiving --------------------------------------------------------------------------------------
    def receive(self, message):
        kind = type(message)
        if not self.serving and kind in REFUSED_WHILE_STARTING:
            # Listeners open only once the broker has caught up with the metadata: connections are refused.
            return self.send(message.reply_to, Disconnected(self.name, message))
        if self.authorizer is not None and kind in AUTHORIZED and self._denied(message):
            return
        if kind is P.ProduceRequest:
            self._produce(message)
        elif kind is P.FetchRequest:
            self.fetch_manager.handle(message)
        elif kind is P.FetchResponse:
            corr = message.corr
            for fetcher in self.fetchers.values():
                if fetcher.corr == corr:
                    fetcher.handle_response(message)
                    break
        elif kind is P.MetadataUpdate:
            self._apply_metadata(message)
        elif kind is P.AlterPartitionResponse:
            replica = self.alter_pending.pop(message.corr, None)
            if replica is not None and replica.pending_isr is not None:
                if message.error is not None:
                    replica.alter_failed(message.error)
                elif message.state is not None:
                    self.apply_partition_state(message.state)
        elif kind is P.MetadataRequest:
            partitions = {tp: (s.leader, s.leader_epoch) for tp, s in self.metadata.items()}
            if self.authorizer is not None:
                return self._authorized_metadata(message, partitions)
            self.send(message.reply_to, P.MetadataResponse(message.corr, partitions))
        elif kind in GROUP_REQUESTS:
            reply_to = message.reply_to
            self.coordinator.handle(message, lambda response: self.send(reply_to, response))
        elif kind is P.FindCoordinatorRequest:
            self._find_coordinator(message)
        elif kind is P.ApiVersionsRequest:
            self.send(message.reply_to, P.ApiVersionsResponse(message.corr))
        elif kind is P.ListOffsetsRequest:
            self._list_offsets(message)
        elif kind is P.InitProducerIdRequest and message.transactional_id is None:
            self.send(message.reply_to, P.InitProducerIdResponse(message.corr, self.cluster.allocate_producer_id()))
        elif kind in TXN_REQUESTS:
            reply_to = message.reply_to
            self.txn_coordinator.handle(message, lambda response: self.send(reply_to, response))
        elif kind is P.WriteTxnMarkersRequest:
            self._write_marker(message)
        elif kind is P.WriteTxnMarkersResponse:
            self.txn_coordinator.marker_written(message)
        elif kind is Disconnected:
            self._disconnected(message.peer, message.message)

    def on_disconnect(self, peer):
        self._disconnected(peer, None)

    # ---- access control (acl.py): what each request needs, as Kafka's KafkaApis asks its authorizer ---------
    def principal_of(self, message) -> str:
        """The principal of the connection ``message`` came on: the client's ``edsim.principal``."""
        return getattr(self.world.nodes.get(message.reply_to), "principal", ANONYMOUS)

    def _allowed(self, principal, operation, resource_type, name) -> bool:
        return self.authorizer.authorize(principal, operation, resource_type, name)

    def _denied(self, req) -> bool:
        """Check ``req`` against the ACLs (KafkaApis.handle*Request); answer a denied one with Kafka's error and
        return True. Produce needs WRITE on the topic; ListOffsets DESCRIBE (a consumer's Fetch needs READ on each
        topic: checked per partition, fetch.py);
        FindCoordinator DESCRIBE on the group; JoinGroup, SyncGroup, Heartbeat, LeaveGroup and OffsetCommit READ
        on the group (OffsetCommit also READ on each topic); OffsetFetch DESCRIBE on the group and its topics;
        InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and TxnOffsetCommit WRITE on the
        transactional id (AddPartitionsToTxn also WRITE on each topic, AddOffsetsToTxn READ on the group)."""
        principal = self.principal_of(req)
        if principal in self.authorizer.super_users:
            return False
        allowed = self._allowed
        kind = type(req)
        reply_to = req.reply_to
        if kind is P.ProduceRequest:
            # KafkaApis.handleProduceRequest: WRITE is asked per topic; the partitions of a denied topic are
            # answered TOPIC_AUTHORIZATION_FAILED, the others appended, all in the one response
            verdicts = {}
            denied = {}
            for tp in req.partitions:
                topic = tp[0]
                ok = verdicts.get(topic)
                if ok is None:
                    ok = verdicts[topic] = allowed(principal, "WRITE", "TOPIC", topic)
                if not ok:
                    denied[tp] = (P.TOPIC_AUTHORIZATION_FAILED, -1)
            if not denied:
                return False
            self._produce(req, denied)
            return True
        if kind is P.ListOffsetsRequest:
            if allowed(principal, "DESCRIBE", "TOPIC", req.tp[0]):
                return False
            self.send(reply_to, P.ListOffsetsResponse(req.corr, req.tp, P.TOPIC_AUTHORIZATION_FAILED))
            return True
        if kind is P.FindCoordinatorRequest:
            if req.key_type != "group" or allowed(principal, "DESCRIBE", "GROUP", req.group):
                return False
            self.send(reply_to, P.FindCoordinatorResponse(req.corr, P.GROUP_AUTHORIZATION_FAILED))
            return True
        error = None
        if kind is P.InitProducerIdRequest:
            if req.transactional_id is None or allowed(principal, "WRITE", "TRANSACTIONAL_ID", req.transactional_id):
                return False
            self.send(reply_to, P.InitProducerIdResponse(req.corr, -1, -1, P.TRANSACTIONAL_ID_AUTHORIZATION_FAILED))
            return True
        if kind in TXN_REQUESTS or kind is P.TxnOffsetCommitRequest:
            if not allowed(principal, "WRITE", "TRANSACTIONAL_ID", req.transactional_id):
                error = P.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            elif kind is P.AddPartitionsToTxnRequest and not all(
                    allowed(principal, "WRITE", "TOPIC", topic) for topic, _ in req.partitions):
                error = P.TOPIC_AUTHORIZATION_FAILED
            elif kind in (P.AddOffsetsToTxnRequest, P.TxnOffsetCommitRequest) and not allowed(
                    principal, "READ", "GROUP", req.group):
                error = P.GROUP_AUTHORIZATION_FAILED
            elif kind is P.TxnOffsetCommitRequest and not all(
                    allowed(principal, "READ", "TOPIC", topic) for topic, _ in req.offsets):
                error = P.TOPIC_AUTHORIZATION_FAILED
        elif kind is P.OffsetFetchRequest:
            if not allowed(principal, "DESCRIBE", "GROUP", req.group):
                error = P.GROUP_AUTHORIZATION_FAILED
            elif not all(allowed(principal, "DESCRIBE", "TOPIC", topic) for topic, _ in req.tps):
                error = P.TOPIC_AUTHORIZATION_FAILED
        elif kind in GROUP_REQUESTS:
            if not allowed(principal, "READ", "GROUP", req.group):
                error = P.GROUP_AUTHORIZATION_FAILED
            elif kind is P.OffsetCommitRequest and not all(
                    allowed(principal, "READ", "TOPIC", topic) for topic, _ in req.offsets):
                error = P.TOPIC_AUTHORIZATION_FAILED
        if error is None:
            return False
        response = DENIED_RESPONSE[kind]
        self.send(reply_to, response(req.corr, error))
        return True

    def _authorized_metadata(self, req, partitions):
        """Metadata: a topic the principal may not DESCRIBE comes back as TOPIC_AUTHORIZATION_FAILED, without
        its partitions (KafkaApis.handleTopicMetadataRequest; Java clients ask for the topics they use)."""
        principal = self.principal_of(req)
        denied = {}
        for topic in self.cluster.topics:
            if not topic.startswith("__") and not self._allowed(principal, "DESCRIBE", "TOPIC", topic):
                denied[topic] = P.TOPIC_AUTHORIZATION_FAILED
        if denied:
            partitions = {tp: leader for tp, leader in partitions.items() if tp[0] not in denied}
        self.send(req.reply_to, P.MetadataResponse(req.corr, partitions, denied))

    def _disconnected(self, peer, message):
        if not peer.startswith("broker-"):
            return
        fetcher = self.fetchers.get(int(peer[len("broker-"):]))
        if fetcher is not None:
            fetcher.failed()

    # ---- replica fetchers (fetcher.py) ----------------------------------------------------------------------
    def start_fetching(self, replica):
        """``replica`` follows ``replica.leader``: move it to that leader's fetcher, made on first use
        (``AbstractFetcherManager.addFetcherForPartitions``)."""
        old = replica.fetcher
        leader = replica.leader
        if old is not None:
            if old.leader == leader:
                return old.add(replica)         # a new leader epoch: fetched again with it
            old.remove(replica)
        if leader < 0 or leader == self.id:
            return
        fetcher = self.fetchers.get(leader)
        if fetcher is None:
            fetcher = self.fetchers[leader] = ReplicaFetcher(self, leader)
        fetcher.add(replica)

    def stop_fetching(self, replica):
        """``replica`` leads now, or has no leader: no fetcher fetches it (``removeFetcherForPartitions``)."""
        if replica.fetcher is not None:
            replica.fetcher.remove(replica)

    def _produce(self, req, results=None):
        """Append each partition of a ProduceRequest and answer once, when every partition has its result
        (``ReplicaManager.appendRecords``; for acks=all Kafka's ``DelayedProduce`` waits until the high watermark
        reached every partition's records or the request's timeout passed, REQUEST_TIMED_OUT for the partitions
        still waiting). ``results`` holds partitions answered already (refused by the authorizer). acks=0 gets
        no answer: on any error Kafka closes the connection."""
        client = req.reply_to
        acks = req.acks
        results = {} if results is None else results
        if acks == "0":
            failed = bool(results)

            def note(error, base=-1):
                nonlocal failed
                if error is not None:
                    failed = True

            for tp, batch in req.partitions.items():
                if tp not in results:
                    replica = self.replicas.get(tp)
                    if replica is None:
                        failed = True
                    else:
                        replica.handle_produce(batch, acks, req.timeout, note)
            if failed:
                self.send(client, Disconnected(self.name))
            return
        waiting = [len(req.partitions) - len(results)]
        corr = req.corr

        def answered(tp, error, base):
            results[tp] = (error, base)
            waiting[0] -= 1
            if waiting[0] == 0:
                self.send(client, P.ProduceResponse(corr, results))

        if not waiting[0]:
            return self.send(client, P.ProduceResponse(corr, results))
        for tp, batch in req.partitions.items():
            if tp in results:
                continue
            replica = self.replicas.get(tp)
            if replica is None:
                answered(tp, P.NOT_LEADER_OR_FOLLOWER, -1)
            else:
                replica.handle_produce(batch, acks, req.timeout,
                                       lambda error, base=-1, tp=tp: answered(tp, error, base))

    def internal_leadership(self, replica, gained: bool):
        """This broker became (or stopped being) leader of a partition of an internal topic: the group or
        transaction coordinator of that partition moves with it."""
        coordinator = self.coordinator if replica.tp[0] == OFFSETS_TOPIC else self.txn_coordinator
        if gained:
            coordinator.became_leader(replica)
        else:
            coordinator.lost_leadership(replica)

    def _write_marker(self, req):
        replica = self.replicas.get(req.tp)
        dst, corr, tp = req.reply_to, req.corr, req.tp

        def reply(error, base=-1):
            if error is None and tp[0] == OFFSETS_TOPIC:
                self.coordinator.transaction_ended(tp, req.producer_id, req.commit)
            self.send(dst, P.WriteTxnMarkersResponse(corr, tp, error))

        if replica is None:
            return reply(P.NOT_LEADER_OR_FOLLOWER)
        replica.handle_marker(req, reply)

    def _find_coordinator(self, req):
        internal = OFFSETS_TOPIC if req.key_type == "group" else TXN_TOPIC
        topic = self.cluster.topics.get(internal)
        leader = -1
        if topic is not None:
            state = self.metadata.get((internal, offsets_partition(req.group, topic["partitions"])))
            leader = state.leader if state is not None else -1
        error = None if leader >= 0 else P.COORDINATOR_NOT_AVAILABLE
        self.send(req.reply_to, P.FindCoordinatorResponse(req.corr, error, leader))

    def _list_offsets(self, req):
        replica = self.replicas.get(req.tp)
        if replica is None or replica.role != "leader":
            return self.send(req.reply_to, P.ListOffsetsResponse(req.corr, req.tp, P.NOT_LEADER_OR_FOLLOWER))
        if req.which == "earliest":
            offset = replica.log.start
        else:
            offset = replica.last_stable_offset if req.isolation == "read_committed" else replica.hw
        self.send(req.reply_to, P.ListOffsetsResponse(req.corr, req.tp, None, offset, replica.leader_epoch))

    def _apply_metadata(self, update: P.MetadataUpdate):
        if update.start > self.metadata_offset and update.start != 0:
            return                           # a gap: the next heartbeat response fills it
        if update.end <= self.metadata_offset and update.start != 0:
            return
        for state in update.records:
            self.apply_partition_state(state)
        self.metadata_offset = max(self.metadata_offset, update.end)
        self.serving = True

    def apply_partition_state(self, state: P.PartitionState):
        known = self.metadata.get(state.tp)
        if known is not None and (known.leader_epoch, known.partition_epoch) > (state.leader_epoch,
                                                                                state.partition_epoch):
            return
        self.metadata[state.tp] = state
        replica = self.replicas.get(state.tp)
        if replica is not None:
            replica.apply(state)
