"""Panels to run and break a scenario by hand (ipywidgets 8). ``ExperimentPanel(scenario)`` in a notebook cell."""
from .panel import ExperimentPanel

__all__ = ["ExperimentPanel"]
