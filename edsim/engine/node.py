"""A node's lifecycle: up, crashed (memory lost, disk kept), restarted, paused (stalled, state kept)."""
from __future__ import annotations


class Node:
    """Something on the network: a broker, the controller, a client.

    Everything a node does happens in callbacks it schedules with ``call_later`` or in messages it receives;
    both are dropped if the node crashed since (a new *incarnation* is a new process), and held while it is
    paused, to run in order when it resumes, as a process stopped by a long GC pause does.
    """

    def __init__(self, world, name: str):
        self.world = world
        self._env = world.env
        self.name = name
        self.up = True
        self.paused = False
        self.powered_off = False        # down by a power loss: nothing answers for it, not even with a reset
        self.incarnation = 0
        self._held: list = []
        self._resumed: list = []
        self.companions: list = []      # nodes in the same process (a service's consumer and its producer)
        world.add(self)

    @property
    def now(self) -> float:
        return self._env._now       # SimPy's Environment.now, without its property call: asked very often

    # ---- scheduling -----------------------------------------------------------------------------------
    def call_later(self, delay, fn, *args):
        incarnation = self.incarnation
        return self.world.call_later(delay, self._fire, incarnation, fn, args)

    def _fire(self, incarnation, fn, args):
        if incarnation != self.incarnation or not self.up:
            return
        if self.paused:
            self._held.append((fn, args))
        else:
            fn(*args)

    def deliver(self, message, incarnation):
        """Called by the network; ``incarnation`` is the one the sender addressed. ``_fire`` written out: this
        runs for every message, and the call saved is 2% of a run's instructions (callgrind, default scenario)."""
        if incarnation != self.incarnation or not self.up:
            return
        if self.paused:
            self._held.append((self.receive, (message,)))
        else:
            self.receive(message)

    def receive(self, message):  # pragma: no cover - every node kind overrides it
        raise NotImplementedError

    # ---- lifecycle --------------------------------------------------------------------------------------
    def crash(self, power_loss=False):
        """The process dies. A crash resets its connections (peers hear of it one latency later); a power loss
        resets nothing, so peers wait for their own timeouts, and loses what the machine had not made durable
        (``on_power_loss``). Messages already on the wire still arrive: a packet does not know its sender died."""
        if not self.up:
            return
        self.up = False
        self.paused = False
        self.powered_off = power_loss
        self.incarnation += 1
        self._held.clear()
        waiting, self._resumed = self._resumed, []
        for event in waiting:
            event.succeed()
        if power_loss:
            self.on_power_loss()
        self.on_crash()
        if self.world.network is not None:
            self.world.network.node_crashed(self, power_loss)
        for node in self.companions:
            node.crash(power_loss=power_loss)

    def restart(self):
        if self.up:
            return
        self.up = True
        self.powered_off = False
        if self.world.network is not None:
            self.world.network.node_restarted(self)
        for node in self.companions:
            node.restart()
        self.on_restart()

    def pause(self):
        if self.up:
            self.paused = True
            for node in self.companions:
                node.pause()

    def when_running(self):
        """A SimPy event that fires once the node is not paused (at once if it is not)."""
        event = self.world.env.event()
        if self.paused:
            self._resumed.append(event)
        else:
            event.succeed()
        return event

    def resume(self):
        if not self.paused:
            return
        self.paused = False
        for node in self.companions:
            node.resume()
        waiting, self._resumed = self._resumed, []
        for event in waiting:
            event.succeed()
        held, self._held = self._held, []
        for fn, args in held:
            if not self.up or self.paused:
                self._held.append((fn, args))
                continue
            fn(*args)

    def on_crash(self):
        """Forget what lives in memory (subclasses)."""

    def on_power_loss(self):
        """Lose what was not yet durable on disk (subclasses with a disk)."""

    def on_restart(self):
        """Recover from disk and rejoin (subclasses)."""

    def on_disconnect(self, peer: str):
        """A connection to ``peer`` was reset because ``peer`` crashed (subclasses)."""
