"""Faults: specs (plain data) and the nemesis that applies them to a running cluster."""
from .specs import Fault, FaultError, crash, drop, isolate, partition, pause, slow
from .nemesis import Nemesis

__all__ = ["Fault", "FaultError", "Nemesis", "crash", "isolate", "partition", "pause", "slow", "drop"]
