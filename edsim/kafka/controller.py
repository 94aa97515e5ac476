"""The KRaft controller, as a dedicated node: broker liveness, leader election, ISR changes, the metadata log.

A broker is fenced when no heartbeat has come for broker.session.timeout.ms, or when it registers anew after a
restart; fencing removes it from every ISR (never emptying one: KRaft keeps the last member) and moves its
leaderships to the first live ISR member. With no live ISR member the partition goes offline (leader -1) unless
unclean.leader.election.enable lets any live replica lead. Every change bumps the partition epoch, a leader change
the leader epoch (KIP-101), and is appended to the metadata log that brokers follow (KIP-500, KIP-631).
"""
from __future__ import annotations

from ..engine import Node
from . import protocol as P

TICK = 0.25


class BrokerInfo:
    __slots__ = ("incarnation", "last_heartbeat", "fenced")

    def __init__(self, now):
        self.incarnation = 0
        self.last_heartbeat = now
        self.fenced = False


class Controller(Node):
    kind = "controller"

    def __init__(self, world, cluster):
        super().__init__(world, "controller")
        self.cluster = cluster
        self.session_timeout = cluster.config.seconds("broker.session.timeout.ms")
        self.partitions: dict[tuple, P.PartitionState] = {}    # on disk: the metadata log's current image
        self.log: list = []                                    # on disk: the metadata log
        self.brokers: dict[int, BrokerInfo] = {}
        self.unclean: dict[str, bool] = {}                     # topic -> unclean.leader.election.enable
        self.call_later(TICK, self._tick)

    def on_restart(self):
        for info in self.brokers.values():
            info.last_heartbeat = self.now                     # a new controller gives every broker a session
        self.call_later(TICK, self._tick)

    def register(self, broker_id):
        self.brokers[broker_id] = BrokerInfo(self.now)

    # ---- the metadata log -------------------------------------------------------------------------------
    def create_partition(self, tp, replicas, unclean):
        self.unclean[tp[0]] = unclean
        state = P.PartitionState(tp, tuple(replicas), replicas[0], 0, tuple(replicas), 0)
        self._append(state, push=False)
        return state

    def _append(self, state, push=True):
        self.partitions[state.tp] = state
        self.log.append(state)
        self.cluster.partition_changed(state, self.now)
        if push:
            update = P.MetadataUpdate(len(self.log) - 1, len(self.log), [state])
            for bid in self.brokers:
                self.send(f"broker-{bid}", update)

    def _change(self, state, leader, isr):
        if leader == state.leader and tuple(isr) == state.isr:
            return
        epoch = state.leader_epoch + (1 if leader != state.leader else 0)
        self._append(P.PartitionState(state.tp, state.replicas, leader, epoch, tuple(isr),
                                      state.partition_epoch + 1))

    def snapshot(self) -> P.MetadataUpdate:
        return P.MetadataUpdate(0, len(self.log), list(self.partitions.values()))

    def send(self, dst, message):
        self.world.network.send(self, dst, message)

    # ---- liveness ---------------------------------------------------------------------------------------
    def _tick(self):
        now = self.now
        for bid, info in self.brokers.items():
            if not info.fenced and now - info.last_heartbeat > self.session_timeout:
                self.fence(bid)
        self.call_later(TICK, self._tick)

    def _live(self, bid):
        info = self.brokers.get(bid)
        return info is not None and not info.fenced

    def _elect(self, state, isr):
        """The first replica, in assignment order, that is in the ISR and alive; unclean if allowed."""
        for r in state.replicas:
            if r in isr and self._live(r):
                return r, isr
        if self.unclean.get(state.tp[0]):
            for r in state.replicas:
                if self._live(r):
                    return r, (r,)
        return -1, isr

    def fence(self, bid):
        self.brokers[bid].fenced = True
        for state in list(self.partitions.values()):
            if bid not in state.replicas:
                continue
            isr = tuple(r for r in state.isr if r != bid) or state.isr
            leader = state.leader
            if leader == bid or leader == -1:
                leader, isr = self._elect(state, isr)
            self._change(state, leader, isr)

    def unfence(self, bid):
        self.brokers[bid].fenced = False
        for state in list(self.partitions.values()):
            if state.leader == -1 and bid in state.replicas:
                leader, isr = self._elect(state, state.isr)
                if leader != -1:
                    self._change(state, leader, isr)

    # ---- requests ---------------------------------------------------------------------------------------
    def receive(self, message):
        kind = type(message)
        if kind is P.BrokerHeartbeat:
            info = self.brokers.get(message.broker)
            if info is None or message.incarnation != info.incarnation:
                return self._registration(message.broker, message.incarnation)
            info.last_heartbeat = self.now
            if info.fenced:
                self.unfence(message.broker)
            if message.metadata_offset < len(self.log):
                self._catch_up(message.broker, message.metadata_offset)
        elif kind is P.BrokerRegistration:
            self._registration(message.broker, message.incarnation)
        elif kind is P.AlterPartitionRequest:
            self._alter_partition(message)

    def _catch_up(self, bid, offset):
        if offset == 0:
            update = self.snapshot()
        else:
            update = P.MetadataUpdate(offset, len(self.log), self.log[offset:])
        self.send(f"broker-{bid}", update)

    def _registration(self, bid, incarnation):
        info = self.brokers.get(bid)
        if info is None or incarnation < info.incarnation:
            return
        if incarnation > info.incarnation:
            if not info.fenced:
                self.fence(bid)              # the old incarnation's leaderships and ISR places go first
            info.incarnation = incarnation
        info.last_heartbeat = self.now
        self._catch_up(bid, 0)
        if info.fenced:
            self.unfence(bid)

    def _alter_partition(self, req):
        state = self.partitions.get(req.tp)
        error = None
        if state is None:
            error = P.UNKNOWN_TOPIC_OR_PARTITION
        elif state.leader != req.broker or state.leader_epoch != req.leader_epoch:
            error = P.FENCED_LEADER_EPOCH
        elif state.partition_epoch != req.partition_epoch:
            error = P.INVALID_UPDATE_VERSION
        elif any(r not in state.isr and not self._live(r) for r in req.isr):
            error = P.INELIGIBLE_REPLICA             # KIP-841: a fenced broker may not join the ISR
        if error is None:
            self._change(state, state.leader, req.isr)
        self.send(f"broker-{req.broker}", P.AlterPartitionResponse(req.corr, req.tp, error,
                                                                  self.partitions.get(req.tp)))
