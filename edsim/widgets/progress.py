"""A notebook progress bar (ipywidgets) for runs and sweeps: ``simulate(..., progress=ProgressBar())``."""
from __future__ import annotations

import ipywidgets as W

from ..progress import expected_load_seconds, run_fraction


class ProgressBar:
    """Shows itself (``display``) when first told anything; works as a run's ``progress(phase, seconds)`` and as a
    sweep's ``progress(done, total)``. ``scenario`` (optional) tells a run's bar how long its load phase lasts."""

    def __init__(self, scenario=None, description="edsim"):
        self.horizon = expected_load_seconds(scenario) if scenario is not None else 0.0
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, description=description)
        self.label = W.Label("")
        self.widget = W.HBox([self.bar, self.label])
        self.shown = False

    def __call__(self, first, second):
        if not self.shown:
            from IPython.display import display
            display(self.widget)
            self.shown = True
        if isinstance(first, str):          # a run: (phase, simulated seconds)
            self.bar.value = run_fraction(first, second, self.horizon)
            self.label.value = f"{first}, t = {second:.1f} s"
        else:                               # a sweep: (done, total)
            self.bar.value = first / second if second else 1.0
            self.label.value = f"{first}/{second} runs"
