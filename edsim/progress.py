"""Progress of long runs and sweeps, told to a callback: nothing is shown unless asked.

``simulate(..., progress=f)`` / ``Scenario.run(progress=f)`` call ``f(phase, simulated_seconds)``;
``sweep(..., progress=f)`` calls ``f(done, total)`` after each run. ``progress=True`` draws a text bar on stderr
(:class:`TextBar`); ``edsim.widgets.ProgressBar()`` is the notebook's bar. Watching never changes a run: the
callback only reads the clock (the model never imports this module's users, widgets or viz).
"""
from __future__ import annotations

import sys

from .configs import ConfigError

PHASES = ("workload", "drain", "heal", "catch-up", "done")
WORKLOAD_SHARE = 0.8        # the bar's share of the load phase; the later phases share the rest


class TextBar:
    """A one-line bar on a stream (stderr by default), redrawn in place: ``update(fraction, text)``."""

    def __init__(self, label: str = "", width: int = 30, stream=None):
        self.label, self.width = label, width
        self.stream = stream if stream is not None else sys.stderr
        self.shown = None

    def update(self, fraction: float, text: str = ""):
        fraction = min(max(float(fraction), 0.0), 1.0)
        filled = int(round(fraction * self.width))
        line = f"{self.label}[{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} {text}".rstrip()
        if line == self.shown:
            return
        pad = " " * max(0, len(self.shown or "") - len(line))
        self.stream.write("\r" + line + pad)
        if fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()
        self.shown = line


def run_fraction(phase: str, t: float, horizon: float) -> float:
    """How far a run is: the load phase by simulated time against its expected length, then the phases."""
    if phase == "workload":
        return WORKLOAD_SHARE * (min(t / horizon, 1.0) if horizon > 0 else 0.0)
    if phase not in PHASES:
        return 0.0
    later = PHASES[1:]
    return WORKLOAD_SHARE + (1 - WORKLOAD_SHARE) * later.index(phase) / (len(later) - 1)


def expected_load_seconds(scenario) -> float:
    """The load phase's expected simulated length: the workload's messages over its rate, or the last fault."""
    from .workload import workload_config
    spec = workload_config(scenario.workload)
    horizon = spec["messages"] / spec["rate"] if scenario.uses_workload() else 0.0
    ends = [f.ends if f.ends is not None else f.at for f in scenario.faults]
    return max([horizon] + ends)


class RunBar:
    """``progress=True`` for one run: a text bar of the phases and the simulated clock."""

    def __init__(self, scenario, stream=None):
        self.horizon = expected_load_seconds(scenario)
        self.bar = TextBar("run ", stream=stream)

    def __call__(self, phase, t):
        self.bar.update(run_fraction(phase, t, self.horizon), f"{phase}, t = {t:.1f} s")


class SweepBar:
    """``progress=True`` for a sweep: a text bar of the runs done."""

    def __init__(self, stream=None):
        self.bar = TextBar("sweep ", stream=stream)

    def __call__(self, done, total):
        self.bar.update(done / total if total else 1.0, f"{done}/{total} runs")


def _checked(progress, what):
    if progress is None or progress is False:
        return None
    if progress is True:
        return what()
    if callable(progress):
        return progress
    raise ConfigError(f"progress={progress!r} is not allowed: progress must be None, True (a text bar on stderr) "
                      "or a function")


def run_progress(progress, scenario):
    """The callback a run reports to (None: nothing to report)."""
    return _checked(progress, lambda: RunBar(scenario))


def sweep_progress(progress):
    """The callback a sweep reports to, ``f(done, total)`` (None: nothing to report)."""
    return _checked(progress, SweepBar)
