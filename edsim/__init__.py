"""edsim: a simulated Kafka to run, break and repair the ideas of *Designing Event-Driven Systems*.

    import edsim
    from edsim import faults
    result = edsim.simulate(producer={"acks": "1"}, faults=[faults.crash("leader", at=1.0, restart_after=2.0)],
                            seed=1)
    result.summary()
"""
from . import faults
from .configs import ConfigError, EdsimWarning
from .faults import FaultError
from .kafka import InvariantViolation
from .lab import Cluster
from .scenario import Result, Scenario, simulate
from .sweep import sweep

__version__ = "0.1.0"
__all__ = ["simulate", "Scenario", "Result", "Cluster", "sweep", "faults", "ConfigError", "FaultError",
           "EdsimWarning", "InvariantViolation"]
