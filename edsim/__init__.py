"""edsim: a simulated Kafka to run, break and repair the ideas of *Designing Event-Driven Systems*.

    import edsim
    from edsim import faults
    result = edsim.simulate(producer={"acks": "1"}, faults=[faults.crash("leader", at=1.0, restart_after=2.0)],
                            seed=1)
    result.summary()

``help(edsim.simulate)`` and ``help(edsim.Scenario)`` say what every argument takes; docs/options.md lists every
config. ``Scenario.save(path)`` / ``Scenario.load(path)`` keep scenarios in YAML or JSON files, and
``python -m edsim run scenario.yaml`` / ``python -m edsim check history.csv`` run them from the shell.
"""
from . import apps, faults, invariants
from .app import Service, ServiceSpec, service
from .configs import ConfigError, EdsimWarning
from .faults import FaultError
from .kafka import InvariantViolation
from .kafka.acl import AclBinding, acl
from .kafka.log import TOMBSTONE
from .lab import Cluster
from .result import Result
from .scenario import Scenario, simulate
from .sweep import sweep

__version__ = "0.1.0"
__all__ = ["simulate", "Scenario", "Result", "Cluster", "sweep", "faults", "ConfigError", "FaultError",
           "EdsimWarning", "InvariantViolation", "Service", "ServiceSpec", "service", "apps", "invariants", "acl", "AclBinding",
           "TOMBSTONE"]
