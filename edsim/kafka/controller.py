"""The KRaft controller, as a dedicated node: broker liveness, leader election, ISR changes, the metadata log.

A broker is fenced when no heartbeat has come for broker.session.timeout.ms, or when it registers anew after a
restart; fencing removes it from every ISR and moves its leaderships to the first live ISR member. With no live
ISR member the partition goes offline (leader -1) unless unclean.leader.election.enable lets any live replica
lead. Every change bumps the partition epoch, a leader change the leader epoch (KIP-101), and is appended to the
metadata log that brokers follow (KIP-500, KIP-631).

Eligible leader replicas (KIP-966; on by default for new clusters since Kafka 4.1, the broker setting
``eligible.leader.replicas.version``): while the ISR is below min.insync.replicas the high watermark cannot move
(KAFKA-15583), so a replica that leaves the ISR then still holds every committed record. The controller keeps such
replicas in the partition's ELR and elects, in order: a live ISR member; when the ISR is empty, a live ELR member;
else the last known leader if it is alive again (Java's PartitionChangeBuilder). The ISR may then become empty. A
broker that registers after an unclean shutdown (every crash here) may have lost what it had not flushed, so it
leaves every ISR and ELR (KAFKA-15586). Without ELR, KRaft keeps the last ISR member instead.
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
        self.min_isr: dict[tuple, int] = {}                    # tp -> min.insync.replicas, capped at its RF
        self.elr_enabled = cluster.config["eligible.leader.replicas.version"] == 1
        self.call_later(TICK, self._tick)

    def on_restart(self):
        for info in self.brokers.values():
            info.last_heartbeat = self.now                     # a new controller gives every broker a session
        self.call_later(TICK, self._tick)

    def register(self, broker_id):
        self.brokers[broker_id] = BrokerInfo(self.now)

    # ---- the metadata log -------------------------------------------------------------------------------
    def create_partition(self, tp, replicas, unclean, min_isr=1):
        self.unclean[tp[0]] = unclean
        self.min_isr[tp] = min(min_isr, len(replicas))
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

    def _change(self, state, isr, removed=-1, unclean_shutdown=-1):
        """Java's PartitionChangeBuilder: the partition with ``isr`` as its target ISR, its ELR kept up to date,
        and a leader elected if the current one may no longer lead (``removed`` and ``unclean_shutdown`` may
        not)."""
        isr = tuple(isr)
        elr, last_known = state.elr, state.last_known_leader
        if self.elr_enabled:
            if len(isr) >= self.min_isr.get(state.tp, 1):
                elr, last_known = (), -1
            else:           # the replicas leaving the ISR below min.insync.replicas hold every committed record
                was = set(elr) | set(state.isr)
                elr = tuple(r for r in state.replicas if r in was and r not in isr and r != unclean_shutdown)
        elif not isr:
            isr = state.isr                          # without ELR, KRaft keeps the last ISR member

        def acceptable(r):
            return r != removed and r != unclean_shutdown and self._live(r)

        leader, unclean = self._elect(state, isr, elr, last_known, acceptable)
        if leader in elr:                            # elected from the ELR: it is the ISR now
            isr, elr = (leader,), tuple(r for r in elr if r != leader)
        elif unclean:                                # an unclean election forgets what the others held
            isr, elr = (leader,), ()
        if self.elr_enabled:
            if not isr and state.isr and state.leader >= 0:
                last_known = state.leader            # the first time the partition loses its ISR
            elif leader >= 0:
                last_known = -1
        if leader == state.leader and isr == state.isr and elr == state.elr and last_known == state.last_known_leader:
            return
        epoch = state.leader_epoch + (1 if leader != state.leader else 0)
        self._append(P.PartitionState(state.tp, state.replicas, leader, epoch, isr, state.partition_epoch + 1,
                                      elr, last_known))

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

    def _elect(self, state, isr, elr, last_known, acceptable):
        """(leader, unclean): the current leader while it may lead; else the first replica in assignment order
        that is in the ISR (or, the ISR empty, in the ELR) and acceptable; else the last known leader if it is
        back (an unclean election in Java's terms, though nothing is lost: it held everything committed); else,
        if the topic allows it, any live replica (unclean); else none (-1)."""
        def valid(r):
            return (r in isr or (not isr and r in elr)) and acceptable(r)

        if state.leader >= 0 and valid(state.leader):
            return state.leader, False
        for r in state.replicas:
            if valid(r):
                return r, False
        if self.elr_enabled and not isr and not elr and last_known >= 0 and acceptable(last_known):
            return last_known, True
        if self.unclean.get(state.tp[0]):
            for r in state.replicas:
                if acceptable(r):
                    return r, True
        return -1, False

    def could_lead(self, state) -> tuple:
        """The brokers that could lead ``state``'s partition once live: its ISR; with the ISR empty its eligible
        leader replicas and last known leader (KIP-966); any replica if the topic allows unclean elections."""
        if self.unclean.get(state.tp[0]):
            return state.replicas
        if state.isr:
            return state.isr
        last = (state.last_known_leader,) if state.last_known_leader >= 0 else ()
        return tuple(dict.fromkeys(state.elr + last))

    def fence(self, bid):
        self.brokers[bid].fenced = True
        for state in list(self.partitions.values()):
            if bid in state.replicas:
                self._change(state, [r for r in state.isr if r != bid], removed=bid)

    def unfence(self, bid):
        self.brokers[bid].fenced = False
        for state in list(self.partitions.values()):
            if state.leader == -1 and bid in state.replicas:
                self._change(state, state.isr)

    def unclean_shutdown(self, bid):
        """KAFKA-15586: a broker back from an unclean shutdown may lack what it had acknowledged; with ELR on it
        leaves every ISR and ELR before it is unfenced."""
        if not self.elr_enabled:
            return
        for state in list(self.partitions.values()):
            if bid in state.isr or bid in state.elr:
                self._change(state, [r for r in state.isr if r != bid], unclean_shutdown=bid)

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
            self.unclean_shutdown(bid)       # every restart here follows a crash
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
            self._change(state, req.isr)
        self.send(f"broker-{req.broker}", P.AlterPartitionResponse(req.corr, req.tp, error,
                                                                  self.partitions.get(req.tp)))
