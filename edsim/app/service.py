"""A service: an application written as a SimPy process on the public client API, run as one or more instances.

    class Counter(edsim.Service):
        def run(self, ctx):
            counts = ctx.store("counts")
            orders = ctx.consumer(group="counter", subscribe=["orders"])
            while True:
                records = yield from orders.poll(0.1)
                ...

    edsim.service(Counter, instances=2, num_standby_replicas=1)

The class is made anew each time an instance starts or restarts, so whatever ``run`` keeps in ``self`` dies with
the process, as memory does; what must survive lives in a store (backed by a changelog topic) or in Kafka.
"""
from __future__ import annotations

import difflib
import inspect

from ..configs import ConfigError


class Service:
    """Subclass it and write ``run(self, ctx)``, a generator: every wait goes through ``ctx`` or a client.

    Options given to ``edsim.service(cls, **options)`` become attributes; a class declares the options it takes
    as class attributes with their defaults (or as ``__init__`` parameters).
    """

    #: A source feeds the run from outside (``apps.Load``): a scenario's load phase lasts until every source's
    #: ``run`` has returned. Other services run until the run ends.
    source = False

    def __init__(self, **options):
        for name, value in options.items():
            setattr(self, name, value)

    def run(self, ctx):  # pragma: no cover - every service overrides it
        raise NotImplementedError(f"{type(self).__name__} must define run(self, ctx), a generator")
        yield


class ServiceSpec:
    """What ``edsim.service(...)`` returns: plain, picklable data (the class, how many instances, options)."""

    __slots__ = ("cls", "instances", "num_standby_replicas", "options", "instance_names")

    def __init__(self, cls, instances=1, num_standby_replicas=0, options=None, instance_names=None):
        self.cls = cls
        self.instances = instances
        self.num_standby_replicas = num_standby_replicas
        self.options = dict(options or {})
        self.instance_names = instance_names      # the workload keeps today's names ("producer")

    def names(self, service: str) -> list[str]:
        """The instances' names: ``<service>-1``, ``<service>-2``..."""
        if self.instance_names is not None:
            return list(self.instance_names)
        return [f"{service}-{i + 1}" for i in range(self.instances)]

    def check(self, service: str):
        """Raise ConfigError on anything the run would refuse, naming the service, the option and what is allowed."""
        if not isinstance(service, str) or not service:
            raise ConfigError(f"service name {service!r} is not allowed: a service needs a non-empty string name")
        if isinstance(self.instances, bool) or not isinstance(self.instances, int) or self.instances < 1:
            raise ConfigError(f"service {service!r}: instances={self.instances!r} is not allowed: a whole number >= 1")
        n = self.num_standby_replicas
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < self.instances:
            raise ConfigError(f"service {service!r}: num_standby_replicas={n!r} is not allowed: a whole number from 0 "
                              f"to instances - 1 ({self.instances - 1}); a standby lives on another instance")
        allowed = options_of(self.cls)
        for name in self.options:
            if allowed is not None and name not in allowed:
                close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"service {service!r}: option {name!r} is not allowed{hint} {self.cls.__name__} "
                                  f"takes {', '.join(sorted(allowed)) or 'no options'}")
        self.make()

    def make(self) -> Service:
        """A fresh service object: what one instance runs, until it crashes."""
        return self.cls(**self.options)

    def __eq__(self, other):
        return isinstance(other, ServiceSpec) and (self.cls, self.instances, self.num_standby_replicas,
                                                   self.options, self.instance_names) == (
            other.cls, other.instances, other.num_standby_replicas, other.options, other.instance_names)

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self):
        args = [self.cls.__name__]
        if self.instances != 1:
            args.append(f"instances={self.instances}")
        if self.num_standby_replicas:
            args.append(f"num_standby_replicas={self.num_standby_replicas}")
        args += [f"{k}={v!r}" for k, v in self.options.items()]
        return f"edsim.service({', '.join(args)})"


def options_of(cls) -> set | None:
    """The option names ``cls`` takes: its ``__init__`` parameters, or its public class attributes (None: any)."""
    if not (isinstance(cls, type) and issubclass(cls, Service)):
        raise ConfigError(f"{cls!r} is not a service: subclass edsim.Service and write run(self, ctx)")
    if cls.__init__ is not Service.__init__:
        params = inspect.signature(cls.__init__).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params if p.name != "self" and p.kind is not p.VAR_POSITIONAL}
    names = set()
    for klass in cls.__mro__:
        if klass in (Service, object):
            continue
        names |= {n for n, v in vars(klass).items() if not n.startswith("_") and not callable(v)
                  and not isinstance(v, (classmethod, staticmethod, property))}
    return names - {"source"}


def service(cls, instances: int = 1, num_standby_replicas: int = 0, **options) -> ServiceSpec:
    """A service of ``instances`` instances of ``cls`` (named ``<service>-1``, ``<service>-2``...), each store
    with ``num_standby_replicas`` warm copies on other instances (Kafka Streams' ``num.standby.replicas``)."""
    options_of(cls)
    return ServiceSpec(cls, instances, num_standby_replicas, options)


def as_spec(value, name: str) -> ServiceSpec:
    """A ``services=`` entry: a spec, a configured service object (``apps.Load(...)``) or a Service class."""
    if isinstance(value, ServiceSpec):
        return value
    if isinstance(value, Service):
        return ServiceSpec(type(value), 1, 0, getattr(value, "options", None) or {})
    if isinstance(value, type) and issubclass(value, Service):
        return ServiceSpec(value)
    raise ConfigError(f"services[{name!r}]={value!r} is not allowed: give edsim.service(MyService, ...), a built-in "
                      "such as edsim.apps.Load(...), or an edsim.Service subclass")
