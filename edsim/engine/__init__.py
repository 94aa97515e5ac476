"""The simulation substrate: a seeded World on SimPy, nodes that crash, pause and restart, and a Network."""
from .world import World, Timer
from .node import Node
from .network import Network

__all__ = ["World", "Timer", "Node", "Network"]
