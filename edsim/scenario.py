"""Scenario (plain data) and ``simulate``: one experiment, run from a seed (``run.Run`` plays it, ``Result`` is
what it left).

A scenario is the cluster (``brokers``, ``broker``), its topics (``topic``, the workload's, and ``topics``), its
applications (``workload``, sugar for the built-in services, and ``services``), the client configs the workload
uses (``producer``, ``consumer``), the faults, the declared ``invariants`` and the seed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .app.service import ServiceSpec, as_spec
from .clients import producer_config
from .configs import BROKER, CONSUMER, TOPIC, Config, ConfigError, seed_value, unknown_key
from .engine import fewer_collections
from .engine.registry import Registry
from .faults import Fault, FaultError
from .faults.nemesis import check_target
from .result import Result
from .workload import pipeline_producer_settings, producer_settings, workload_config

SECTIONS = ("topic", "producer", "consumer", "broker", "workload")


@dataclass(repr=False)
class Scenario:
    """Everything that defines a run, as plain data; ``Scenario(**kw).run()`` is ``edsim.simulate(**kw)``.

    Every field is checked when the scenario is made: an unknown config name or a value Kafka refuses raises
    ``edsim.ConfigError`` (a ``ValueError``) naming the key, the value and what is allowed; a bad fault raises
    ``edsim.FaultError``. Config names and units are Kafka's (``linger.ms`` in milliseconds; ``docs/options.md``
    lists every one); times of faults are simulated seconds.

    Args:
        brokers: how many brokers the cluster has (ids 1, 2, ...).
        topic: the workload's topic: ``name`` (default ``"events"``) and topic configs such as ``partitions``,
            ``replication.factor`` (default 3), ``min.insync.replicas``, ``unclean.leader.election.enable``.
        producer: the workload producer's configs (``acks``, ``enable.idempotence``, ``linger.ms``, ...).
        consumer: the workload consumers' configs (``isolation.level``, ``session.timeout.ms``, ...).
        broker: broker configs (``replica.lag.time.max.ms``, ``transaction.version``, ``edsim.network.*``, ...).
        workload: the built-in application: ``messages``, ``rate``, ``keys``, ``consumers``, ``commit``,
            ``transaction_size``, ``pipeline``, ... (sugar for ``apps.Load`` / ``apps.Consume`` /
            ``apps.Pipeline``). Empty with ``services`` given: no workload runs.
        faults: a list of ``edsim.faults`` specs (``crash``, ``isolate``, ``partition``, ``pause``, ``slow``,
            ``drop``).
        seed: the seed of every random stream: the same seed gives the same history, row for row.
        topics: more topics by name, each a dict of topic configs.
        services: services by name: ``edsim.service(MyService, instances=2)``, ``apps.Load(...)`` or a class.
        invariants: declared checks from ``edsim.invariants``, reported in ``result.anomalies``.
        acls: ACL bindings (``edsim.acl("User:alice", "WRITE", topic="orders")``) set on the cluster before the
            run; they are judged when ``broker={"authorizer.class.name": ...}`` turns the authorizer on. Clients
            name their principal with ``edsim.principal`` (``edsim.kafka.acl``).

    ``to_dict()`` / ``from_dict()`` and ``save(path)`` / ``Scenario.load(path)`` turn it into plain data and YAML
    or JSON files and back (``edsim.scenario_file``).
    """

    brokers: int = 3
    topic: dict = field(default_factory=dict)
    producer: dict = field(default_factory=dict)
    consumer: dict = field(default_factory=dict)
    broker: dict = field(default_factory=dict)
    workload: dict = field(default_factory=dict)
    faults: list = field(default_factory=list)
    seed: int = 0
    topics: dict = field(default_factory=dict)
    services: dict = field(default_factory=dict)
    invariants: list = field(default_factory=list)
    acls: list = field(default_factory=list)

    def __post_init__(self):
        for name in SECTIONS:
            value = getattr(self, name)
            if value is None:
                setattr(self, name, {})
            elif not isinstance(value, dict):
                raise ConfigError(f"{name}={value!r} is not allowed: {name} must be a dict of Kafka config names")
        if isinstance(self.faults, Fault):
            raise FaultError(f"faults={self.faults!r} is not allowed: faults takes a list, e.g. faults=[{self.faults!r}]")
        if not isinstance(self.faults, (list, tuple)):
            raise FaultError(f"faults={self.faults!r} is not allowed: faults takes a list of edsim.faults specs")
        self.faults = list(self.faults)
        for fault in self.faults:
            if not isinstance(fault, Fault):
                raise FaultError(f"{fault!r} is not a fault: build faults with edsim.faults.crash(...), "
                                 "isolate(...), partition(...), pause(...), slow(...) or drop(...)")
        object.__setattr__(self, "seed", seed_value(self.seed))
        for name in ("topics", "services"):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, {})
            elif not isinstance(value, dict):
                raise ConfigError(f"{name}={value!r} is not allowed: {name} must be a dict keyed by name")
        self.topics = {name: dict(config or {}) for name, config in self.topics.items()}
        self.services = {name: as_spec(value, name) for name, value in self.services.items()}
        if self.invariants is None:
            self.invariants = []
        if not isinstance(self.invariants, (list, tuple)):
            raise ConfigError(f"invariants={self.invariants!r} is not allowed: a list of edsim.invariants checks")
        self.invariants = list(self.invariants)
        if self.acls is None:
            self.acls = []
        if not isinstance(self.acls, (list, tuple)):
            raise ConfigError(f"acls={self.acls!r} is not allowed: a list of edsim.acl(...) bindings")
        from .kafka.acl import AclBinding
        self.acls = [AclBinding.from_dict(binding) for binding in self.acls]
        self.check()

    def __repr__(self):
        """The dataclass's repr, without the service-era fields while they are empty (older outputs stay as
        they were)."""
        shown = [f"{name}={getattr(self, name)!r}" for name in ARGUMENTS[:8]]
        shown += [f"{name}={getattr(self, name)!r}" for name in ARGUMENTS[8:] if getattr(self, name)]
        return f"Scenario({', '.join(shown)})"

    def uses_workload(self) -> bool:
        """Does the scenario run the built-in workload? Yes unless it declares services and no workload."""
        return bool(self.workload) or not self.services

    # ---- validation -------------------------------------------------------------------------------------
    def topic_name(self) -> str:
        name = self.topic.get("name", "events")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"topic name={name!r} is not allowed: it must be a non-empty string")
        return name

    def main_topic(self) -> str:
        """The topic roles such as "leader" refer to: the workload's, or the first declared one without a workload."""
        if not self.uses_workload() and not self.topic and self.topics:
            return next(iter(self.topics))
        return self.topic_name()

    def topic_config(self) -> dict:
        return {k: v for k, v in self.topic.items() if k != "name"}

    def check(self):
        """Raise on anything Kafka or edsim would refuse, before a run starts."""
        if isinstance(self.brokers, bool) or not isinstance(self.brokers, int) or self.brokers < 1:
            raise ConfigError(f"brokers={self.brokers!r} is not allowed: brokers must be a whole number >= 1")
        self.topic_name()
        topic = Config("topic", TOPIC, self.topic_config())
        if topic["replication.factor"] > self.brokers:
            raise ConfigError(f"replication.factor={topic['replication.factor']} is not allowed: it must be at "
                              f"most the number of brokers ({self.brokers}); Kafka answers "
                              "INVALID_REPLICATION_FACTOR")
        Config("broker", BROKER, self.broker)
        Config("consumer", CONSUMER, self.consumer)
        workload = workload_config(self.workload)
        producer, _ = producer_config(producer_settings(workload, self.producer))
        if workload["pipeline"]:
            producer, _ = producer_config(pipeline_producer_settings(workload, self.producer, 0))
        if workload["transaction_size"] or workload["pipeline"] == "exactly_once_v2":
            broker = Config("broker", BROKER, self.broker)
            timeout, most = producer["transaction.timeout.ms"], broker["transaction.max.timeout.ms"]
            if timeout > most:
                # the coordinator answers InitProducerId with INVALID_TRANSACTION_TIMEOUT, every time
                raise ConfigError(f"transaction.timeout.ms={timeout} is not allowed: it is above the brokers' "
                                  f"transaction.max.timeout.ms={most}, so Kafka refuses InitProducerId with "
                                  f"INVALID_TRANSACTION_TIMEOUT. Lower it, or raise broker="
                                  f"{{'transaction.max.timeout.ms': ...}}")
            rf = broker["transaction.state.log.replication.factor"]
            if rf > self.brokers:
                raise ConfigError(f"transaction.state.log.replication.factor={rf} is not allowed with "
                                  f"{self.brokers} broker(s): Kafka cannot create __transaction_state. Set "
                                  f"broker={{'transaction.state.log.replication.factor': {self.brokers}}}")
        for name, config in self.topics.items():
            if not isinstance(name, str) or not name or name.startswith("__"):
                raise ConfigError(f"topics: name {name!r} is not allowed: a non-empty name not starting with '__' "
                                  "(Kafka's internal topics)")
            t = Config("topic", TOPIC, config)
            if t["replication.factor"] > self.brokers:
                raise ConfigError(f"topics[{name!r}]: replication.factor={t['replication.factor']} is not allowed: "
                                  f"it must be at most the number of brokers ({self.brokers})")
        names = self.names()
        for invariant in self.invariants:
            check = getattr(invariant, "check_scenario", None)
            if check is None:
                raise ConfigError(f"invariants: {invariant!r} is not an invariant: build one with edsim.invariants")
            check(self)
        partitions = {self.topic_name(): topic["partitions"]} if self.main_topic() == self.topic_name() else {}
        if workload["pipeline"] and self.uses_workload():
            partitions[self.topic_name() + "-out"] = topic["partitions"]
        for name, config in self.topics.items():
            partitions[name] = Config("topic", TOPIC, config)["partitions"]
        from . import limits
        limits.check_sizes(self.brokers, partitions, workload,
                           {name: spec.instances for name, spec in self.services.items()})
        limits.check_times(workload, self.uses_workload(), self.faults, producer)
        if self.uses_workload() and workload["record_size"] > producer["max.request.size"]:
            raise ConfigError(f"workload record_size={workload['record_size']} is not allowed with max.request.size="
                              f"{producer['max.request.size']}: Kafka's producer fails every such send with "
                              "RecordTooLargeException; raise max.request.size or send smaller records")
        groups = [workload["group"]] if workload["consumers"] and self.uses_workload() else []
        user_services = bool(self.services)
        for fault in self.faults:
            for target in fault.targets_named():
                check_target(target, names, list(range(1, self.brokers + 1)), self.main_topic(), partitions,
                             groups, self.transactional_ids(workload), expect_groups=user_services,
                             expect_txn=user_services)

    def names(self) -> Registry:
        """What each name will mean in a run of this scenario (brokers, the controller, services and their
        instances), as the run's own registry will say: checked before the run starts."""
        registry = Registry()
        for b in range(1, self.brokers + 1):
            registry.add(f"broker-{b}", None, "broker")
        registry.add("controller", None, "controller")
        services = dict(self.workload_services()) if self.uses_workload() else {}
        for name, spec in self.services.items():
            if name in services:
                raise ConfigError(f"service name {name!r} is not allowed: the workload's services are called "
                                  f"{', '.join(services)}; choose another name")
            services[name] = spec
        for name, spec in services.items():
            spec.check(name)
            instances = spec.names(name)
            for n in ([name] if instances != [name] or len(instances) > 1 else []) + instances:
                if n in registry or n == "catch-up":
                    raise ConfigError(f"service name {n!r} is not allowed: it clashes with "
                                      f"{'a ' + registry.kind(n) if n in registry else 'the final reader'}; "
                                      "every broker, service and instance needs a name of its own")
                registry.add(n, spec, "service" if n == name and instances != [name] else "instance")
        return registry

    def workload_services(self) -> dict:
        from .workload import workload_services
        return workload_services(self.topic_name(), workload_config(self.workload), self.producer, self.consumer)

    def transactional_ids(self, workload=None) -> list[str]:
        """The transactional.ids of the run: the producer's, then each pipeline member's."""
        workload = workload or workload_config(self.workload)
        ids = [producer_settings(workload, self.producer).get("transactional.id")]
        ids += [pipeline_producer_settings(workload, self.producer, i).get("transactional.id")
                for i in range(workload["consumers"] if workload["pipeline"] else 0)]
        return [i for i in ids if i]

    # ---- copies -----------------------------------------------------------------------------------------
    def replace(self, **changes) -> "Scenario":
        """A changed copy. ``replace(seed=3)``, ``replace(producer={...})`` (the whole section), or one setting
        by its dotted name: ``replace(**{"producer.acks": "1"})``."""
        fields = {name: copy.deepcopy(getattr(self, name)) for name in ARGUMENTS if name != "services"}
        fields["services"] = dict(self.services)      # specs are plain data: shared, not copied
        for key, value in changes.items():
            section, dot, setting = key.partition(".")
            if dot and section in SECTIONS:
                fields[section][setting] = value
            elif key in fields:
                fields[key] = value
            else:
                raise unknown_key("scenario", key, list(fields) + [f"{s}.<config>" for s in SECTIONS])
        return Scenario(**fields)

    def to_code(self) -> str:
        """The ``edsim.simulate(...)`` call that runs this scenario."""
        parts = [f"brokers={self.brokers}"] if self.brokers != 3 else []
        for name in SECTIONS:
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value!r}")
        if self.topics:
            parts.append(f"topics={self.topics!r}")
        if self.services:
            parts.append("services={" + ", ".join(f"{k!r}: {v!r}" for k, v in self.services.items()) + "}")
        if self.faults:
            parts.append("faults=[" + ", ".join(repr(f) for f in self.faults) + "]")
        if self.invariants:
            parts.append("invariants=[" + ", ".join(repr(i) for i in self.invariants) + "]")
        if self.acls:
            parts.append("acls=[" + ", ".join(repr(a) for a in self.acls) + "]")
        parts.append(f"seed={self.seed}")
        return "edsim.simulate(\n    " + ",\n    ".join(parts) + ",\n)"

    # ---- plain data and files ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The scenario as plain data (``edsim.scenario_file``): what a YAML or JSON file holds."""
        from .scenario_file import to_dict
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, allow_import: bool = False) -> "Scenario":
        """A scenario from plain data. A service class outside edsim is imported only with ``allow_import``."""
        from .scenario_file import from_dict
        return from_dict(data, allow_import)

    def save(self, path) -> "Path":
        """Write the scenario to ``path``: YAML (``.yaml``, ``.yml``) or JSON (``.json``)."""
        from .scenario_file import save
        return save(self, path)

    @classmethod
    def load(cls, path, allow_import: bool = False) -> "Scenario":
        """Read a scenario file (YAML or JSON). Loading executes nothing unless ``allow_import=True`` lets it
        import a service class named by ``package.module:Class`` outside edsim."""
        from .scenario_file import load
        return load(path, allow_import)

    # ---- running ----------------------------------------------------------------------------------------
    def run(self, seed: int | None = None, progress=None) -> "Result":
        """Run it (with ``seed`` instead of the scenario's, if given). ``progress``: None, True (a text bar on
        stderr) or ``progress(phase, simulated_seconds)``, told of each phase ("workload", "drain", "heal",
        "catch-up", "done") and every 5 simulated seconds within one: long runs can show it."""
        from .progress import run_progress
        from .run import Run
        return Run(self, seed, run_progress(progress, self)).finish()

    @fewer_collections()
    def start(self, seed: int | None = None, progress=None) -> "LiveRun":
        """The same run, held at t=0 to advance step by step (``edsim.live.LiveRun``): faults can then be injected
        *now*, as a panel's live mode does; ``.finish()`` ends it exactly as ``run()`` would."""
        from .live import LiveRun
        from .progress import run_progress
        return LiveRun(self, seed, run_progress(progress, self))

ARGUMENTS = ("brokers", "topic", "producer", "consumer", "broker", "workload", "faults", "seed", "topics",
             "services", "invariants", "acls")


def simulate(*, brokers: int = 3, topic: dict | None = None, producer: dict | None = None,
             consumer: dict | None = None, broker: dict | None = None, workload: dict | None = None,
             faults: list = (), seed: int = 0, topics: dict | None = None, services: dict | None = None,
             invariants: list | None = None, acls: list | None = None, progress=None, **unknown) -> "Result":
    """Run one scenario and return its ``Result``: the history, the anomalies the checker found, the summary.

        edsim.simulate(producer={"acks": "1"}, faults=[faults.crash("leader", at=1.0, restart_after=2.0)], seed=1)

    The arguments are the fields of :class:`edsim.Scenario` (see there): ``brokers``, ``topic``, ``producer``,
    ``consumer``, ``broker``, ``workload``, ``faults``, ``seed``, ``topics``, ``services``, ``invariants``,
    ``acls``; each
    left out takes Kafka's default. An unknown argument or config raises ``edsim.ConfigError`` naming it and what
    is allowed.

    ``progress``: ``None`` (nothing is shown), ``True`` (a text bar on the terminal's stderr), or a callable
    ``progress(phase, simulated_seconds)`` told of each phase ("workload", "drain", "heal", "catch-up", "done")
    and every 5 simulated seconds within one. Progress never changes the run: the same seed gives the same
    history with or without it.
    """
    for key in unknown:
        raise unknown_key("simulate() argument", key, ARGUMENTS + ("progress",))
    given = dict(brokers=brokers, topic=topic, producer=producer, consumer=consumer, broker=broker,
                 workload=workload, faults=faults, seed=seed, topics=topics, services=services,
                 invariants=invariants, acls=acls)
    return Scenario(**given).run(progress=progress)


