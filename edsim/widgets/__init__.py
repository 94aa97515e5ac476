"""Panels to run and break a scenario by hand (ipywidgets 8). ``ExperimentPanel(scenario)`` in a notebook cell;
``ProgressBar()`` is a notebook progress bar for ``simulate(..., progress=bar)`` and ``sweep(..., progress=bar)``."""
from .panel import ExperimentPanel
from .progress import ProgressBar

__all__ = ["ExperimentPanel", "ProgressBar"]
