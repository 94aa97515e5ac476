"""Clients of the platform: the producer and the consumer (consumer groups build on the consumer)."""
from .consumer import Consumer, FatalConsumerError, OffsetOutOfRange, Records
from .membership import CommitFailedException
from .producer import KafkaError, Producer, RecordMetadata, producer_config

__all__ = ["CommitFailedException", "FatalConsumerError", "Producer", "Consumer", "Records", "RecordMetadata",
           "KafkaError", "OffsetOutOfRange", "producer_config"]
