"""The Kafka platform: brokers, the KRaft controller, partitions and their replicas, the wire protocol."""
from .cluster import InvariantViolation, KafkaCluster
from .log import Batch, Log
from .replica import Replica
from .broker import Broker
from .controller import Controller

__all__ = ["KafkaCluster", "InvariantViolation", "Batch", "Log", "Replica", "Broker", "Controller"]
