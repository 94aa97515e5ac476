"""What a service instance's ``run(ctx)`` works through: its clients, stores, clock and randomness.

Every wait goes through ``ctx`` or a client, so a pause holds it (a stalled process returns from no call until it
runs again) and a crash ends it. Clients are made once per instance and reused on a restart, as a restarted
process opens the same kind of clients again: the instance's first client carries the instance's own name (so a
history row's ``process`` is the instance), later ones ``<instance>.producer``, ``<instance>.consumer``...
"""
from __future__ import annotations

from ..configs import ConfigError


class Context:
    def __init__(self, instance):
        self._instance = instance
        self._service = instance.service
        self._slots: dict[str, int] = {}
        self._stores_opened: set = set()

    # ---- who and when ------------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self._instance.env.now

    @property
    def instance(self) -> int:
        """This instance's number, from 0."""
        return self._instance.index

    @property
    def name(self) -> str:
        """This instance's name (``counter-2``)."""
        return self._instance.name

    @property
    def service(self) -> str:
        return self._service.name

    @property
    def env(self):
        return self._instance.env

    @property
    def rng(self):
        """This instance's own seeded random stream (the same in every run of the seed)."""
        return self._instance.world.rng(f"service/{self._instance.name}")

    @property
    def shared(self) -> dict:
        """What survives this service's crashes: the outside world it serves (orders still to arrive), a disk.
        Memory (``self`` of the service object) does not."""
        return self._service.shared

    # ---- waiting -----------------------------------------------------------------------------------------
    def sleep(self, seconds: float):
        """Generator: wait ``seconds`` of simulated time (and for the end of a pause)."""
        yield self._instance.env.timeout(seconds)
        if self._instance.paused:
            yield self._instance.when_running()

    def hold(self):
        """Generator: wait until this instance is not paused (returns at once if it is not)."""
        if self._instance.paused:
            yield self._instance.when_running()

    # ---- clients -----------------------------------------------------------------------------------------
    def _client(self, kind: str, make, config):
        instance = self._instance
        k = self._slots.get(kind, 0)
        self._slots[kind] = k + 1
        mine = [c for c in instance.clients if c._edsim_kind == kind]
        if k < len(mine):
            client = mine[k]
            if client._edsim_config != config:
                raise ConfigError(f"service {self.service!r}: its {kind} #{k + 1} was opened with config "
                                  f"{client._edsim_config!r} and now with {config!r}: a restarted instance opens "
                                  "the same clients again")
            return client
        if not instance.clients:
            name = instance.name
        else:
            name = f"{instance.name}.{kind}" + (f"-{k + 1}" if k else "")
        with instance.world.owned_by(instance.name):
            client = make(name)
        client._edsim_kind = kind
        client._edsim_config = config
        instance.clients.append(client)
        self._service.hooks.client_opened(self._service, instance, client)
        return client

    def producer(self, config: dict | None = None, record_size: int = 100):
        """This instance's producer (the k-th call returns the k-th producer, the same one after a restart)."""
        config = dict(config or {})
        cluster = self._service.cluster
        return self._client("producer", lambda name: cluster.producer(config, name=name, record_size=record_size),
                            config)

    def consumer(self, group: str | None = None, subscribe=None, config: dict | None = None):
        """A consumer in ``group`` subscribed to the topics ``subscribe`` (a topic nobody declared is created
        with the broker's defaults, as ``auto.create.topics.enable`` does)."""
        config = dict(config or {})
        if group is not None:
            if config.get("group.id", group) != group:
                raise ConfigError(f"service {self.service!r}: group={group!r} and group.id={config['group.id']!r} "
                                  "disagree: give one")
            config["group.id"] = group
        topics = [subscribe] if isinstance(subscribe, str) else list(subscribe or [])
        cluster = self._service.cluster
        consumer = self._client("consumer", lambda name: cluster.consumer(config, name=name), config)
        if topics:
            for topic in topics:
                self._service.hooks.topic_used(self._service, topic)
            consumer.subscribe(topics, listener=_Rebalance(self._service.hooks, self._instance)
                               if "group.id" in config else None)
            for store in self._instance.stores.values():
                self._service.hooks.bind_store(store)
        return consumer

    # ---- state -------------------------------------------------------------------------------------------
    def store(self, name: str):
        """The key-value store ``name`` of this service, sharded per input partition as Kafka Streams' tasks
        shard it, each shard backed by partition p of the compacted topic ``<service>-<name>-changelog``."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"service {self.service!r}: store name {name!r} is not allowed: a non-empty string")
        if name in self._stores_opened:
            raise ConfigError(f"service {self.service!r}: store {name!r} is opened twice in one run of "
                              f"{self._instance.name}: open each store once and keep it")
        self._stores_opened.add(name)
        return self._service.hooks.open_store(self._service, self._instance, name)

    # ---- values and the history ----------------------------------------------------------------------------
    def derive(self, record) -> int:
        """The value this service derives from ``record`` (or from a value): fresh the first time, the same on
        every retry (a re-processed record writes the same output again); its lineage is recorded."""
        parent = record.value if hasattr(record, "value") else record
        return int(self._instance.world.history.values.derive(int(parent), self.service)[0])

    def fresh(self) -> int:
        """A fresh value with no parent (a new input from outside)."""
        return int(self._instance.world.history.values.fresh(1)[0])

    def record(self, f: str, key=-1, value=-1, topic: str = "", partition: int = -1, offset: int = -1,
               type_: str = "ok", detail: str = ""):
        """A service-level history row of this instance: ``state``, ``view``, ``effect`` or ``process``."""
        self._instance.world.history.event(self.now, self._instance.name, f, type_=type_, topic=topic,
                                           partition=partition, detail=detail, value=value, offset=offset,
                                           key=key)


class _Rebalance:
    """The rebalance listener the platform installs: stores restore what the instance is assigned."""

    __slots__ = ("host", "instance")

    def __init__(self, host, instance):
        self.host, self.instance = host, instance

    def on_partitions_revoked(self, tps):
        self.host.partitions_changed(self.instance, tps, [])

    def on_partitions_assigned(self, tps):
        self.host.partitions_changed(self.instance, [], tps)
