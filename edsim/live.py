"""A run held in the hand: advance it in steps, inject faults *now*, look at the brokers, then finish it.

``Scenario.start(seed)`` builds exactly the world ``Scenario.run`` builds (they share the set-up code), so a
``LiveRun`` that is only advanced and finished gives the same history as ``run()``. The panel's live mode uses it:
"crash leader" acts at the current simulated time, whoever leads then.

Every step and fault is recorded in ``actions``; ``replay()`` performs them again on a fresh run of the same seed,
which is how a panel shows "what the checker will find" without ending the run the learner is watching.
"""
from __future__ import annotations

import math

from . import faults as _faults
from .configs import ConfigError
from .faults import Fault, FaultError
from .engine import fewer_collections
from .truth import Truth

LIVE_KINDS = ("crash", "isolate", "pause", "slow")


class LiveRun:
    """One run of a Scenario, advanced by hand. ``now`` is the simulated time; ``truth`` reads the brokers as
    they are at this moment."""

    def __init__(self, scenario, seed=None, progress=None):
        from .run import Run
        self.scenario = scenario
        self._run = Run(scenario, seed, progress)
        self.seed = self._run.seed
        self.actions: list[tuple] = []        # ("advance", until) | ("inject", Fault) | ("heal", None)
        self.injected: list[Fault] = []       # the faults injected live, with ``at`` the moment they acted
        self.result = None

    # ---- looking --------------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self._run.env.now

    @property
    def lab(self):
        """The run's Cluster: its brokers, clients and services, as they are now."""
        return self._run.cluster

    @property
    def run(self):
        return self._run

    @property
    def topic(self) -> str:
        return self._run.topic

    @property
    def truth(self) -> Truth:
        """What the brokers hold right now (a live view: read it again after ``advance``)."""
        return Truth(self._run.cluster.kafka, self._run.topic)

    @property
    def history(self):
        """The history so far, as a DataFrame."""
        return self._run.cluster.history.to_frame()

    @property
    def finished(self) -> bool:
        return self.result is not None

    def leader(self, partition: int = 0) -> int:
        """The broker the controller names leader of ``partition`` now (-1: none)."""
        return self._run.cluster.kafka.controller.partitions[(self._run.topic, partition)].leader

    def followers(self, partition: int = 0) -> list[int]:
        state = self._run.cluster.kafka.controller.partitions[(self._run.topic, partition)]
        return [r for r in state.replicas if r != state.leader]

    # ---- acting ---------------------------------------------------------------------------------------
    def _open(self):
        if self.result is not None:
            raise ConfigError("this live run has finished: start a new one with scenario.start()")

    @fewer_collections()
    def advance(self, seconds: float) -> "LiveRun":
        """Let ``seconds`` of simulated time pass."""
        self._open()
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds <= 0:
            raise ConfigError(f"seconds={seconds!r} is not allowed: advance by a finite number of seconds > 0")
        until = self.now + seconds
        self._run.cluster.env.run(until=until)
        self.actions.append(("advance", until))
        return self

    def inject(self, fault, target="leader", duration=None, factor=2.0) -> Fault:
        """Apply a fault now. ``fault`` is a spec (``faults.crash("leader", at=...)``, its ``at`` must be now or
        later: a later one is scheduled) or a kind, "crash" | "isolate" | "pause" | "slow", acting on ``target``
        for ``duration`` seconds (None: a crash or isolation for good)."""
        self._open()
        if not isinstance(fault, Fault):
            fault = self._spec(fault, target, duration, factor)
        for name in fault.targets_named():
            self._run.nemesis.check_target(name)
        if fault.at > self.now:
            self._run.nemesis.schedule(fault)
        elif fault.at < self.now and not math.isclose(fault.at, self.now):
            raise FaultError(f"at={fault.at} is not allowed: it is in the past (the simulation is at "
                             f"{self.now:.3f} s)")
        else:
            self._run.nemesis.apply(fault)
        self.actions.append(("inject", fault))
        self.injected.append(fault)
        self._run.ends.append(fault.ends if fault.ends is not None else fault.at)
        return fault

    def _spec(self, kind, target, duration, factor) -> Fault:
        now = self.now
        if kind == "crash":
            return _faults.crash(target, at=now, restart_after=duration)
        if kind == "isolate":
            return _faults.isolate(target, at=now, heal_after=duration)
        if kind == "pause":
            return _faults.pause(target, at=now, duration=duration)
        if kind == "slow":
            return _faults.slow(target, at=now, factor=factor, duration=duration)
        raise FaultError(f"fault kind {kind!r} is not allowed live: use one of {', '.join(LIVE_KINDS)}, or pass "
                         "a spec such as faults.partition(...)")

    def heal_all(self):
        """End every fault in force that can end (a crashed broker without restart stays down)."""
        self._open()
        self._run.nemesis.heal_all()
        self.actions.append(("heal", None))

    def finish(self):
        """Play the run out as ``Scenario.run`` does (the workload, drain, heal, catch-up) and return its
        ``Result``. Its scenario lists the scheduled faults and then the injected ones."""
        self._open()
        scenario = self.scenario.replace(seed=self.seed, faults=list(self.scenario.faults) + self.injected) \
            if self.injected else None
        self.result = self._run.finish(scenario)
        return self.result

    # ---- what would come of it --------------------------------------------------------------------------
    def replay(self) -> "LiveRun":
        """A fresh run of the same scenario and seed with every step and fault of this one done again, at the
        same simulated moments: the same history so far."""
        other = LiveRun(self.scenario, self.seed)
        env = other._run.env
        for action, arg in self.actions:
            if action == "advance":
                env.run(until=arg)
                other.actions.append((action, arg))
            elif action == "inject":
                other.inject(arg)
            else:
                other.heal_all()
        return other

    def outcome(self):
        """The Result this run will have if nothing else is done to it, computed on a replay (this run goes on)."""
        if self.result is not None:
            return self.result
        return self.replay().finish()

    def __repr__(self):
        state = "finished" if self.result is not None else f"at t={self.now:.3f}s"
        return f"<LiveRun seed={self.seed} {state}, {len(self.injected)} fault(s) injected>"
