"""``edsim.Cluster``: a cluster to write services against, for the pattern chapters and for tests.

It owns the World (seeded), the brokers and controller, the history every client writes to, the nemesis, and
the services it hosts. Clients expose SimPy-style generator methods, so a service is a SimPy process::

    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("orders", partitions=3)
    producer = cluster.producer({"acks": "all"})

    def shop(env):
        metadata = yield producer.send("orders", value=1, key=7)

    cluster.env.process(shop(cluster.env))
    cluster.run(until=5)

or, with services that crash and restart as processes do, and a checked result at the end::

    cluster.service("counter", edsim.service(Counter, instances=2))
    cluster.run(until=10)
    result = cluster.result()          # heal, catch up, check
"""
from __future__ import annotations

from .app.instance import ServiceRun
from .app.service import as_spec
from .app.store import StateStore
from .clients import Consumer, Producer
from .configs import ConfigError
from .engine import World
from .faults import Nemesis
from .history import History
from .kafka import KafkaCluster


WARM_UP = 5.0          # seconds a load waits at most for its readers' groups to form
WARM_UP_STEP = 0.001


class Cluster:
    def __init__(self, brokers: int = 3, seed: int = 0, broker: dict | None = None):
        self.history = History()
        self.world = World(seed, history=self.history)
        self.kafka = KafkaCluster(self.world, brokers, broker)
        self.env = self.world.env
        self._nemesis = None
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.services: dict[str, ServiceRun] = {}
        self.restores: list[tuple] = []       # (service, instance, store, partition, records, started, finished)
        self.auto_created: list[str] = []     # topics created because a client named them
        self.invariants: list = []
        self._finish_waiters: dict[str, list] = {}

    @property
    def now(self) -> float:
        return self.env.now

    @property
    def acls(self):
        """The cluster's ACLs and authorizer (``edsim.kafka.acl.Authorizer``): ``cluster.acls.add(edsim.acl(
        "User:alice", "READ", topic="orders"))``, ``.remove(...)``, ``.list()``. They are judged only when the broker
        config sets ``authorizer.class.name``; they take effect at once."""
        return self.kafka.acls

    @property
    def names(self):
        """The world's name registry: what each fault target and process name means."""
        return self.world.names

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
        if consumer.membership is not None:
            self.history.describe(name, consumer.membership.group, self.history.roles().get(name, ("", ""))[1])
        return consumer

    def _check_name(self, name):
        if not isinstance(name, str) or not name or name in self.world.nodes or (
                name in self.world.names and self.world._owner != name):
            raise ConfigError(f"client name {name!r} is not allowed: it must be a new, non-empty name "
                              f"(taken: {', '.join(self.world.names.names())})")

    # ---- services ----------------------------------------------------------------------------------------
    def service(self, name: str, spec, start: bool = True) -> ServiceRun:
        """Host a service (``edsim.service(MyService, instances=2)`` or a built-in such as ``apps.Load(...)``):
        its instances are named ``<name>-1``, ``<name>-2``... and start now unless ``start=False``."""
        spec = as_spec(spec, name)
        spec.check(name)
        for instance in [name] + spec.names(name):
            if instance in self.world.names and not (instance == name and spec.names(name) == [name]):
                raise ConfigError(f"service name {instance!r} is not allowed: it is taken by a "
                                  f"{self.world.names.kind(instance)} (names taken: "
                                  f"{', '.join(self.world.names.names())})")
        running = self.services[name] = ServiceRun(self.world, self, name, spec, hooks=self)
        if start:
            running.start()
        return running

    # what service instances ask of their host ----------------------------------------------------------
    def client_opened(self, service, instance, client):
        group = client.membership.group if getattr(client, "membership", None) is not None else None
        self.history.describe(client.name, group, service.name)
        nemesis = self.nemesis()
        if group and group not in nemesis.groups:
            nemesis.groups.append(group)         # "coordinator" means the first group's coordinator
        txn = getattr(client, "txn", None)
        if txn is not None and txn.transactional_id not in nemesis.txn_ids:
            nemesis.txn_ids.append(txn.transactional_id)
        if isinstance(client, Producer):
            self.producers[client.name] = client
        else:
            self.consumers[client.name] = client

    def topic_used(self, service, topic):
        """A topic a service names: created with the broker's defaults if nobody declared it (Kafka's
        ``auto.create.topics.enable``), refused when that is off."""
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"service {service.name!r}: topic {topic!r} is not allowed: a non-empty string")
        if topic in self.kafka.topics:
            return
        if not self.kafka.config["auto.create.topics.enable"]:
            raise ConfigError(f"service {service.name!r}: topic {topic!r} does not exist and "
                              "auto.create.topics.enable is false: declare it in topics={...}")
        self.kafka.create_topic(topic, {})
        self.auto_created.append(topic)

    def open_store(self, service, instance, name) -> StateStore:
        store = instance.stores.get(name)
        if store is None:
            store = instance.stores[name] = StateStore(instance, name, self)
        self.bind_store(store)
        return store

    def bind_store(self, store):
        """Once the instance subscribes, its stores are sharded like its first input topic: create the changelog
        now, so that it has leaders before the first assignment asks for a restore."""
        consumer = self.input_consumer(store.instance)
        if consumer is not None and consumer.membership.topics:
            store.bind(consumer.membership.topics[0])
            self.ensure_changelog(store)

    def ensure_changelog(self, store):
        if store.changelog not in self.kafka.topics:
            partitions = store.partitions()
            rf = min(3, len(self.kafka.brokers))
            # compacted, as Kafka Streams creates changelogs; Kafka's segment defaults (1 GiB, 7 days) mean a
            # run of seconds never cleans it: store.changelog_config may ask for smaller segments
            config = {"partitions": partitions, "replication.factor": rf, "cleanup.policy": "compact",
                      **getattr(store, "changelog_config", {})}
            self.kafka.create_topic(store.changelog, config)

    def _instance_client(self, instance, suffix, make):
        """A client of ``instance`` the platform opens for it (a restore or standby consumer, a producer)."""
        name = f"{instance.name}.{suffix}"
        client = self.world.nodes.get(name)
        if client is None:
            with self.world.owned_by(instance.name):
                client = make(name)
            client._edsim_kind, client._edsim_config = suffix, None
            instance.clients.append(client)
            self.history.describe(name, None, instance.service.name)
        return client

    @staticmethod
    def _producer_of(instance):
        """The instance's first producer (what its stores write through), or None."""
        return next((c for c in instance.clients if isinstance(c, Producer)), None)

    @staticmethod
    def _principal(instance, config):
        """``config`` with the instance's principal: the clients Kafka Streams opens for an application share its
        credentials (its first client's ``edsim.principal``)."""
        principal = next((c.principal for c in instance.clients if hasattr(c, "principal")), None)
        if principal is not None and principal != "User:ANONYMOUS":
            config = {**config, "edsim.principal": principal}
        return config

    def store_producer(self, instance):
        producer = self._producer_of(instance)
        if producer is None:
            producer = self._instance_client(instance, "producer", lambda n: Producer(
                self.world, self.kafka, n, self._principal(instance, {}) or None))
        return producer

    def _store_isolation(self, instance) -> str:
        producer = self._producer_of(instance)
        return "read_committed" if producer is not None and producer.txn is not None else "read_uncommitted"

    def restore_consumer(self, instance):
        """Kafka Streams' restore consumer: assign() only, from the changelog's start, reads uncommitted data
        only when the service is not transactional (Streams restores read_committed under exactly-once). Streams
        asks for the changelog's end offsets before it restores, so an empty or caught-up shard costs a round trip,
        not a fetch held for fetch.max.wait.ms: its fetches here wait at most 10 ms."""
        return self._instance_client(instance, "restore", lambda n: Consumer(
            self.world, self.kafka, n, self._principal(instance, {
                "auto.offset.reset": "earliest", "isolation.level": self._store_isolation(instance),
                "fetch.max.wait.ms": 10})))

    def standby_consumer(self, instance):
        """A standby task's consumer: reads the changelog as it grows, committed data only under exactly-once."""
        return self._instance_client(instance, "standby", lambda n: Consumer(
            self.world, self.kafka, n, self._principal(instance, {
                "auto.offset.reset": "earliest", "isolation.level": self._store_isolation(instance)})))

    @staticmethod
    def input_consumer(instance):
        return next((c for c in instance.clients if isinstance(c, Consumer) and c.membership is not None
                     and c._edsim_kind == "consumer"), None)

    def partitions_changed(self, instance, revoked, assigned):
        """The instance's group consumer gained or lost partitions: its stores follow, then every instance's
        standby duties are placed again."""
        consumer = self.input_consumer(instance)
        for store in instance.stores.values():
            if consumer is not None and consumer.membership.topics:
                store.bind(consumer.membership.topics[0])
            store.revoked([p for t, p in revoked if t == store._input])
            store.assigned([p for t, p in assigned if t == store._input])
        service = instance.service
        for topic, p in assigned:
            service.owners[p] = instance.index       # the last instance known to own task p
        if service.spec.num_standby_replicas:
            for other in service.instances:
                for store in other.stores.values():
                    store.follow(self.standby_partitions(store))

    def standby_partitions(self, store) -> set:
        """The shards ``store``'s instance keeps warm: for each task, the ``num_standby_replicas`` instances after
        its last known owner, in instance order (as Streams' assignor places standbys on other instances). The
        owner's crash does not move them: they are what a failover restores from."""
        service = store.service
        n = service.spec.num_standby_replicas
        if not n or not store.instance.up:
            return set()
        count = len(service.instances)
        return {p for p, owner in service.owners.items()
                if any((owner + k) % count == store.instance.index for k in range(1, n + 1))}

    def restored(self, store, partition, records, started, finished):
        self.restores.append((store.service.name, store.instance.name, store.name, partition, records, started,
                              finished))
        self.history.event(finished, store.instance.name, "state", type_="info", topic=store.name,
                           partition=partition, value=records, invoke_time=started,
                           detail=f"restored {store.name} shard {partition}: {records} records in "
                                  f"{(finished - started) * 1000:.0f} ms")

    def instance_finished(self, service, instance):
        """A service instance's run() returned: whoever waits for the service to finish hears of it."""
        if service.finished:
            for event in self._finish_waiters.pop(service.name, []):
                event.succeed()

    def finished(self, name: str):
        """An event that fires when every instance of service ``name`` has returned from ``run``."""
        event = self.env.event()
        if self.services[name].finished:
            event.succeed()
        else:
            self._finish_waiters.setdefault(name, []).append(event)
        return event

    def groups_formed(self) -> bool:
        """Every consumer group of the hosted services has each partition of its topics assigned to a stable
        member that knows where to read from. (Checked every millisecond of a warm-up: unstable members, the
        usual answer, are found first and cheaply.)"""
        members = []
        for service in self.services.values():
            for i in service.instances:
                for c in i.clients:
                    membership = c.membership if c.kind == "client" and hasattr(c, "membership") else None
                    if membership is not None:
                        if membership.state != "stable":
                            return False
                        members.append(c)
        groups: dict[str, list] = {}
        for c in members:
            groups.setdefault(c.membership.group, []).append(c)
        for group in groups.values():
            topics = {t for c in group for t in c.membership.topics}
            wanted = sorted(tp for t in topics if t in self.kafka.topics for tp in self.kafka.partitions(t))
            if sorted(tp for c in group for tp in c.assignment) != wanted:
                return False
            if not all(p is not None for c in group for p in c.positions.values()):
                return False
        return True

    def warm_up(self):
        """Generator for a load generator's start: wait, in 1 ms steps and at most WARM_UP seconds, until the
        consumer groups have formed (``groups_formed``), so that the first record finds its readers in place, as
        Kafka's own integration tests wait for a stable group before producing."""
        yield self.env.timeout(0)            # the services started at the same moment open their clients first
        while self.env.now < WARM_UP and not self.groups_formed():
            yield self.env.timeout(WARM_UP_STEP)

    # ---- faults ------------------------------------------------------------------------------------------
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

    def result(self, invariants=None):
        """End the run as a scenario ends: heal every fault, let a fresh reader catch up on every user topic,
        then check the history (with ``invariants`` declared now or earlier in ``self.invariants``)."""
        from .run import Run
        return Run.of_cluster(self, list(self.invariants) + list(invariants or [])).finish()
