"""The simulation substrate: a seeded World on SimPy, nodes that crash, pause and restart, and a Network."""
from .world import World, Timer, fewer_collections
from .node import Node
from .network import Network

__all__ = ["World", "Timer", "Node", "Network", "fewer_collections"]
