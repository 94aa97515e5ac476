"""``edsim.Cluster``: a cluster to write services against, for the pattern chapters and for tests.

It owns the World (seeded), the brokers and controller, the history every client writes to, and the nemesis.
Clients expose SimPy-style generator methods, so a service is a SimPy process::

    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("orders", partitions=3)
    producer = cluster.producer({"acks": "all"})

    def shop(env):
        metadata = yield producer.send("orders", value=1, key=7)

    cluster.env.process(shop(cluster.env))
    cluster.run(until=5)
"""
from __future__ import annotations

from .clients import Consumer, Producer
from .configs import ConfigError
from .engine import World
from .faults import Nemesis
from .history import History
from .kafka import KafkaCluster


class Cluster:
    def __init__(self, brokers: int = 3, seed: int = 0, broker: dict | None = None):
        self.history = History()
        self.world = World(seed, history=self.history)
        self.kafka = KafkaCluster(self.world, brokers, broker)
        self.env = self.world.env
        self._nemesis = None
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}

    @property
    def now(self) -> float:
        return self.env.now

    def create_topic(self, name: str, config: dict | None = None, **settings):
        """Create a topic; settings by Kafka name in ``config`` or as keywords with ``_`` for ``.``
        (``replication_factor=3``)."""
        merged = dict(config or {})
        merged.update({k.replace("_", "."): v for k, v in settings.items()})
        return self.kafka.create_topic(name, merged)

    def add_partitions(self, name: str, count: int):
        self.kafka.add_partitions(name, count)

    def producer(self, config: dict | None = None, name: str | None = None, record_size: int = 100) -> Producer:
        name = name or ("producer" if "producer" not in self.world.nodes else f"producer-{len(self.producers) + 1}")
        self._check_name(name)
        producer = self.producers[name] = Producer(self.world, self.kafka, name, config, record_size)
        return producer

    def consumer(self, config: dict | None = None, name: str | None = None) -> Consumer:
        name = name or f"consumer-{len(self.consumers) + 1}"
        self._check_name(name)
        consumer = self.consumers[name] = Consumer(self.world, self.kafka, name, config)
        return consumer

    def _check_name(self, name):
        if not isinstance(name, str) or not name or name in self.world.nodes:
            raise ConfigError(f"client name {name!r} is not allowed: it must be a new, non-empty name "
                              f"(taken: {', '.join(self.world.nodes)})")

    def nemesis(self, topic: str | None = None) -> Nemesis:
        if self._nemesis is None:
            topic = topic or next(iter(self.kafka.topics), None)
            self._nemesis = Nemesis(self.world, self.kafka, topic)
        return self._nemesis

    def inject(self, *faults):
        """Schedule faults (``edsim.faults`` specs); their ``at`` is simulated time, not earlier than now."""
        nemesis = self.nemesis()
        if nemesis.topic is None and self.kafka.topics:
            nemesis.topic = next(iter(self.kafka.topics))
        for fault in faults:
            nemesis.schedule(fault)

    def run(self, until=None):
        self.env.run(until=until)
