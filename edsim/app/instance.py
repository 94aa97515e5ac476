"""Service instances: one SimPy process each, crashed by ``Process.interrupt`` and restarted by running
``run(ctx)`` again.

An instance is a process in the operating-system sense: its clients (the producer and consumers it opened) live
and die with it, a pause stalls all of them, and its in-memory state (the service object, its store shards) is
gone after a crash. A restart makes a new service object, restarts the clients (a new incarnation: new
connections, a new member id, a new producer session) and runs ``run(ctx)`` from the top; each store shard is
restored from its changelog when the instance is assigned the partition again.
"""
from __future__ import annotations

import inspect

import simpy

from ..configs import ConfigError
from .context import Context


class Instance:
    kind = "instance"

    def __init__(self, service, name: str, index: int):
        self.service = service            # the ServiceRun this instance belongs to
        self.name = name
        self.index = index
        self.world = service.world
        self.env = service.world.env
        self.up = True
        self.paused = False
        self.incarnation = 0
        self.clients: list = []           # every client it opened, in order (a restart reuses them)
        self.process = None
        self.ctx = None
        self.finished = False             # run() returned (a load generator that sent everything)
        self.restarts = 0
        self.stores: dict[str, object] = {}
        self._resumed: list = []

    @property
    def now(self) -> float:
        return self.env.now

    def node_names(self) -> list[str]:
        return [c.name for c in self.clients]

    # ---- running --------------------------------------------------------------------------------------
    def start(self):
        self.ctx = Context(self)
        self.finished = False
        program = self.service.spec.make().run(self.ctx)
        if not inspect.isgenerator(program):
            raise ConfigError(f"service {self.service.name!r}: {self.service.spec.cls.__name__}.run(ctx) must be a "
                              "generator (wait with `yield from consumer.poll(...)`, `yield from ctx.sleep(...)`)")
        self.process = self.env.process(self._main(program, self.incarnation))

    def _main(self, program, incarnation):
        try:
            yield from program
        except simpy.Interrupt:
            return                         # crashed: the process ends where it stood
        if incarnation == self.incarnation:
            self.finished = True
            self.service.instance_finished(self)

    # ---- lifecycle (what the nemesis calls) ------------------------------------------------------------
    def crash(self, power_loss=False):
        if not self.up:
            return
        self.up = False
        self.paused = False
        self.incarnation += 1
        if self.process is not None and self.process.is_alive:
            self.process.interrupt("crash")
        for client in self.clients:
            client.crash(power_loss=power_loss)
        for store in self.stores.values():
            store.crashed()                # memory is lost; the changelog in Kafka is not
        self._wake()

    def restart(self):
        if self.up:
            return
        self.up = True
        self.restarts += 1
        for client in self.clients:
            client.restart()
        self.start()

    def pause(self):
        if self.up:
            self.paused = True
            for client in self.clients:
                client.pause()

    def resume(self):
        if not self.paused:
            return
        self.paused = False
        for client in self.clients:
            client.resume()
        self._wake()

    def when_running(self):
        """An event that fires once this instance is not paused (at once if it is not)."""
        event = self.env.event()
        if self.paused:
            self._resumed.append(event)
        else:
            event.succeed()
        return event

    def _wake(self):
        waiting, self._resumed = self._resumed, []
        for event in waiting:
            event.succeed()

    def __repr__(self):
        state = "up" if self.up else "crashed"
        return f"<Instance {self.name} of {self.service.name}: {state}{', paused' if self.paused else ''}>"


class ServiceRun:
    """A service in one run: its spec, its instances, and what survives their crashes (``shared``)."""

    kind = "service"

    def __init__(self, world, cluster, name: str, spec, hooks=None):
        self.world = world
        self.cluster = cluster
        self.name = name
        self.spec = spec
        self.hooks = hooks                 # the run (or Cluster) the instances report to
        self.shared: dict = {}             # what lives outside the processes: the world they serve, a disk
        self.instances = [Instance(self, n, i) for i, n in enumerate(spec.names(name))]
        self.owners: dict[int, int] = {}   # task (input partition number) -> the instance that last owned it
        if name != self.instances[0].name or len(self.instances) > 1:
            world.names.add(name, self, "service")
        for instance in self.instances:
            world.names.add(instance.name, instance, "instance")

    def node_names(self) -> list[str]:
        return [n for i in self.instances for n in i.node_names()]

    def start(self):
        for instance in self.instances:
            instance.start()

    def instance_finished(self, instance):
        if self.hooks is not None:
            self.hooks.instance_finished(self, instance)

    @property
    def finished(self) -> bool:
        return all(i.finished for i in self.instances)

    # a fault on the service hits every instance
    def crash(self, power_loss=False):
        for i in self.instances:
            i.crash(power_loss=power_loss)

    def restart(self):
        for i in self.instances:
            i.restart()

    def pause(self):
        for i in self.instances:
            i.pause()

    def resume(self):
        for i in self.instances:
            i.resume()

    @property
    def up(self) -> bool:
        return any(i.up for i in self.instances)

    def consumers(self) -> list:
        return [c for i in self.instances for c in i.clients if getattr(c, "membership", None) is not None]

    def __repr__(self):
        return f"<Service {self.name}: {self.spec!r}>"
