"""Fault specs: plain, printable data saying what goes wrong, to whom and when.

Targets: a broker id; ``"leader"`` / ``"followers"`` of the workload topic's partition 0 when the fault fires,
or of another partition (``"leader:orders-2"``); ``"controller"``; ``"coordinator"`` (the broker coordinating the
workload's consumer group, i.e. leading its ``__consumer_offsets`` partition); a client name (``"producer"``,
``"consumer-1"``). Times are simulated seconds from the start of the run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


class FaultError(ValueError):
    """A fault spec that cannot be carried out."""


@dataclass(frozen=True)
class Fault:
    kind: str                      # crash | isolate | partition | pause | slow | drop
    targets: tuple                 # one target, or (side_a, side_b) for partition / (source, destination) for drop
    at: float
    duration: float | None = None  # restart_after / heal_after / duration; None: for good
    factor: float | None = None
    probability: float | None = None
    options: dict = field(default_factory=dict, compare=False)

    def targets_named(self) -> tuple:
        """Every target the spec names (both sides of a partition, source and destination of a drop)."""
        return self.targets[0] + self.targets[1] if self.kind == "partition" else self.targets

    @property
    def ends(self) -> float | None:
        """When the fault is over (None: it never heals)."""
        return None if self.duration is None else self.at + self.duration

    def __repr__(self):
        if self.kind == "partition":
            args = f"{list(self.targets[0])!r}, {list(self.targets[1])!r}"
        elif self.kind == "drop":
            args = f"{self.targets[0]!r}, {self.targets[1]!r}, probability={self.probability}"
        else:
            args = repr(self.targets[0])
        args += f", at={self.at}"
        name = {"crash": "restart_after", "isolate": "heal_after", "partition": "heal_after"}.get(self.kind, "duration")
        if self.kind == "slow":
            args += f", factor={self.factor}"
        if self.duration is not None:
            args += f", {name}={self.duration}"
        if self.options.get("power_loss"):
            args += ", power_loss=True"
        return f"faults.{self.kind}({args})"


def _time(name, value, *, positive=False, optional=False):
    if value is None and optional:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        never = " (leave it out, or None, for never)" if optional else ""
        raise FaultError(f"{name}={value!r} is not allowed: {name} must be a finite number of seconds "
                         f"{'> 0' if positive else '>= 0'}" + (" (it is counted from `at`)" if positive else "")
                         + never)
    return float(value)


def _target(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise FaultError(f"{name}={value!r} is not allowed: a target is a broker id, 'leader', 'followers', "
                         "'leader:<topic>-<partition>', 'controller' or a client name such as 'producer'")
    return value


def _side(name, value):
    if isinstance(value, (list, tuple)):
        if not value:
            raise FaultError(f"{name}=[] is not allowed: each side of a partition names at least one target")
        return tuple(_target(name, v) for v in value)
    return (_target(name, value),)


def crash(target, at, restart_after=None, power_loss=False) -> Fault:
    """The process dies: memory is lost, the log on disk is kept. It restarts after ``restart_after`` seconds,
    or never.

    ``power_loss=True``: the machine loses power. A broker's log also loses what the operating system had not
    written back (appended in the last 30 s and not flushed: see ``Log.lose_unflushed``), and no connection is
    reset: peers learn of the loss by their own timeouts, or by the reset the machine's kernel answers with once it
    is back."""
    if not isinstance(power_loss, bool):
        raise FaultError(f"power_loss={power_loss!r} is not allowed: power_loss must be True or False")
    return Fault("crash", (_target("target", target),), _time("at", at),
                 _time("restart_after", restart_after, positive=True, optional=True),
                 options={"power_loss": True} if power_loss else {})


def isolate(target, at, heal_after=None) -> Fault:
    """Cut ``target`` off from every other node, both ways."""
    return Fault("isolate", (_target("target", target),), _time("at", at),
                 _time("heal_after", heal_after, positive=True, optional=True))


def partition(side_a, side_b, at, heal_after=None) -> Fault:
    """Cut every link between the two sides; nodes named on neither side still reach both."""
    return Fault("partition", (_side("side_a", side_a), _side("side_b", side_b)), _time("at", at),
                 _time("heal_after", heal_after, positive=True, optional=True))


def pause(target, at, duration) -> Fault:
    """Stall the process (a long GC pause): it keeps its state and catches up on what arrived meanwhile."""
    return Fault("pause", (_target("target", target),), _time("at", at), _time("duration", duration, positive=True))


def slow(target, at, factor, duration) -> Fault:
    """Multiply the latency of every link of ``target`` by ``factor``."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1 <= factor < math.inf:
        raise FaultError(f"factor={factor!r} is not allowed: factor must be a number >= 1, finite (how many times "
                         "slower; for a link that carries nothing, use partition or isolate)")
    return Fault("slow", (_target("target", target),), _time("at", at), _time("duration", duration, positive=True),
                 factor=float(factor))


def drop(source, destination, probability, at, duration) -> Fault:
    """Lose each message from ``source`` to ``destination`` with ``probability``."""
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
        raise FaultError(f"probability={probability!r} is not allowed: probability must be between 0 and 1")
    return Fault("drop", (_target("source", source), _target("destination", destination)), _time("at", at),
                 _time("duration", duration, positive=True), probability=float(probability))
