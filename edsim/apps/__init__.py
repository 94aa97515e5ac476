"""Built-in services: what ``workload={...}`` builds, and parts for writing scenarios of several services.

``Load`` writes records at a rate; ``Consume`` is a consumer group applying each record's side effect;
``Pipeline`` consumes, transforms and produces, at least once or exactly once (KIP-447).
"""
from .consume import Consume, Pipeline
from .load import Load

__all__ = ["Load", "Consume", "Pipeline"]
