"""The brokers and the controller of one run, wired to a World's network; topics are created here."""
from __future__ import annotations

from ..configs import BROKER, TOPIC, Config, ConfigError, warn
from ..engine import Network
from .acl import Authorizer
from .broker import Broker
from .controller import Controller
from .coordinator import OFFSETS_TOPIC
from .replica import Replica
from .transactions import TXN_TOPIC


class InvariantViolation(AssertionError):
    """WeakIsr or StrongIsr (hachikuji/kafka-specification) failed: the model lost a committed record."""


class KafkaCluster:
    def __init__(self, world, brokers: int = 3, config=None):
        if isinstance(brokers, bool) or not isinstance(brokers, int) or brokers < 1:
            raise ConfigError(f"brokers={brokers!r} is not allowed: brokers must be a whole number >= 1")
        self.world = world
        self.config = config if isinstance(config, Config) else Config("broker", BROKER, config)
        Network(world, latency=self.config["edsim.network.latency.ms"] / 1000,
                jitter=self.config["edsim.network.jitter.ms"] / 1000)
        self.debug = self.config["edsim.debug.invariants"]
        self.acls = Authorizer(self.config)     # the authorizer and its ACLs: cluster.acls.add(edsim.acl(...))
        self.controller = Controller(world, self)
        self.brokers: dict[int, Broker] = {}
        for bid in range(1, brokers + 1):
            self.brokers[bid] = Broker(world, self, bid)
            self.controller.register(bid)
        self.topics: dict[str, Config] = {}
        self.changes: list[tuple] = []      # (time, topic, partition, leader, epoch, isr, elr): the truth
        self._producer_ids = 0
        self._committed: dict[tuple, tuple] = {}   # tp -> (highest high watermark, epoch and value below it)

    # ---- topics -----------------------------------------------------------------------------------------
    def create_topic(self, name: str, config: dict | None = None) -> Config:
        """Create ``name`` with Kafka topic configs (partitions, replication.factor, min.insync.replicas, ...)."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"topic name {name!r} is not allowed: a topic name must be a non-empty string")
        if name in self.topics:
            raise ConfigError(f"topic {name!r} already exists")
        topic = Config("topic", TOPIC, config)
        for key in ("min.insync.replicas", "unclean.leader.election.enable"):
            if key not in topic.explicit:
                topic._values[key] = self.config[key]     # the broker-wide default applies
        rf, n = topic["replication.factor"], len(self.brokers)
        if rf > n:
            raise ConfigError(f"replication.factor={rf} is not allowed: it must be at most the number of brokers "
                              f"({n}); Kafka answers INVALID_REPLICATION_FACTOR")
        if topic["min.insync.replicas"] > rf:
            warn(f"topic {name!r}: min.insync.replicas={topic['min.insync.replicas']} is above "
                 f"replication.factor={rf}. Kafka accepts it and, since 3.7, uses {rf} (the replica count) "
                 f"instead (apache/kafka PR #14594); edsim does the same.")
        self.topics[name] = topic
        for p in range(topic["partitions"]):
            self._add_partition(name, p, topic)
        return topic

    def _add_partition(self, name, p, topic):
        n = len(self.brokers)
        replicas = [(p + i) % n + 1 for i in range(topic["replication.factor"])]
        tp = (name, p)
        min_isr, unclean = topic["min.insync.replicas"], topic["unclean.leader.election.enable"]
        compacted = "compact" in topic["cleanup.policy"]
        flush_messages, segment_bytes, segment_ms = topic["flush.messages"], topic["segment.bytes"], \
            topic.seconds("segment.ms")
        flush_interval = topic.seconds("flush.ms") if topic["flush.ms"] is not None else None
        for r in replicas:
            replica = Replica(self.brokers[r], tp, replicas, min_isr, unclean)
            replica.topic_config = topic
            replica.compacted = compacted
            replica.log.flush_messages = flush_messages
            replica.log.segment_bytes = segment_bytes
            replica.log.segment_ms = segment_ms
            replica.flush_interval = flush_interval
            self.brokers[r].replicas[tp] = replica
        state = self.controller.create_partition(tp, replicas, unclean, min_isr)
        for broker in self.brokers.values():       # a topic made before the run starts is known everywhere
            if broker.up:
                broker.apply_partition_state(state)
                broker.metadata_offset = len(self.controller.log)

    def add_partitions(self, name: str, count: int):
        """Raise the partition count of ``name`` to ``count`` (kafka-topics --alter --partitions)."""
        topic = self.topics[name]
        if isinstance(count, bool) or not isinstance(count, int) or count <= topic["partitions"]:
            raise ConfigError(f"partitions={count!r} is not allowed: Kafka only adds partitions, so it must be "
                              f"a whole number above {topic['partitions']}")
        for p in range(topic["partitions"], count):
            self._add_partition(name, p, topic)
        topic._values["partitions"] = count

    def ensure_offsets_topic(self):
        """Create __consumer_offsets on first use, as Kafka does when a group first looks for its coordinator."""
        self._ensure_internal(OFFSETS_TOPIC, "offsets.topic", "a consumer group")

    def ensure_transaction_topic(self):
        """Create __transaction_state on first use, as Kafka does when a transactional producer first looks for
        its coordinator."""
        self._ensure_internal(TXN_TOPIC, "transaction.state.log", "a transactional producer",
                              min_isr=self.config["transaction.state.log.min.isr"])

    def _ensure_internal(self, name, prefix, who, min_isr=None):
        if name in self.topics:
            return
        rf, n = self.config[f"{prefix}.replication.factor"], len(self.brokers)
        if rf > n:
            raise ConfigError(f"{prefix}.replication.factor={rf} is not allowed with {n} broker(s): Kafka cannot "
                              f"create {name}, and {who} never finds its coordinator. "
                              f"Set broker={{'{prefix}.replication.factor': {n}}}")
        config = {"partitions": self.config[f"{prefix}.num.partitions"], "replication.factor": rf}
        if min_isr is not None:
            config["min.insync.replicas"] = min_isr
        self.create_topic(name, config)

    def partitions(self, name: str) -> list[tuple]:
        return [(name, p) for p in range(self.topics[name]["partitions"])]

    # ---- truth ------------------------------------------------------------------------------------------
    def leader(self, tp) -> int:
        """The leader the controller has elected for ``tp`` (-1: offline)."""
        return self.controller.partitions[tp].leader

    def partition_changed(self, state, now):
        self.changes.append((now, state.tp[0], state.tp[1], state.leader, state.leader_epoch, state.isr, state.elr))

    def allocate_producer_id(self) -> int:
        self._producer_ids += 1
        return 1000 + self._producer_ids

    def check_invariants(self, tp):
        """WeakIsr and StrongIsr from the TLA+ specification, when ``edsim.debug.invariants`` is on.

        StrongIsr: every committed record (below the highest high watermark any legitimate leader reached) is on
        every member of the ISR the controller holds. WeakIsr: every record below the current leader's high
        watermark is on every member of the ISR as the leader sees it. Logs with the same epoch at the same
        offset hold the same prefix (as in Raft), so comparing the last committed record suffices."""
        if not self.debug:
            return
        state = self.controller.partitions.get(tp)
        if state is None:
            return
        leader = self.brokers[state.leader].replicas[tp] if state.leader >= 0 else None
        legitimate = (leader is not None and leader.role == "leader" and leader.broker.up
                      and leader.leader_epoch == state.leader_epoch)
        if legitimate and leader.hw > self._committed.get(tp, (0,))[0]:
            hw = leader.hw
            self._committed[tp] = (hw, leader.log.epoch_at(hw - 1), leader.log.value_at(hw - 1))
        checks = []
        if tp in self._committed:
            checks.append(("StrongIsr", self._committed[tp], state.isr, "committed"))
        if legitimate and leader.hw > 0:
            hw = leader.hw
            checks.append(("WeakIsr", (hw, leader.log.epoch_at(hw - 1), leader.log.value_at(hw - 1)), leader.isr,
                           f"below leader broker {state.leader}'s high watermark"))
        for name, (hw, epoch, value), members, what in checks:
            for r in members:
                log = self.brokers[r].replicas[tp].log
                held = (log.epoch_at(hw - 1), log.value_at(hw - 1))
                if log.end < hw or held != (epoch, value):
                    raise InvariantViolation(
                        f"{name} violated at t={self.world.now:.4f}s on {tp[0]}-{tp[1]}: the record at offset "
                        f"{hw - 1} is {what} (epoch {epoch}, value {value}), but ISR member broker {r} holds "
                        f"{log.end} records and, at that offset, (epoch, value) {held}")
