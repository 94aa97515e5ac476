"""The messages brokers, controller and clients exchange, and Kafka's error codes.

Names follow Kafka's protocol (Produce, Fetch, Metadata, ListOffsets, InitProducerId, AlterPartition, broker
registration and heartbeats), reduced to the fields whose behaviour the model reproduces. A topic-partition is
the tuple ``(topic, partition)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Error codes (org.apache.kafka.common.protocol.Errors). None means success.
NOT_LEADER_OR_FOLLOWER = "NOT_LEADER_OR_FOLLOWER"
NOT_ENOUGH_REPLICAS = "NOT_ENOUGH_REPLICAS"
NOT_ENOUGH_REPLICAS_AFTER_APPEND = "NOT_ENOUGH_REPLICAS_AFTER_APPEND"
REQUEST_TIMED_OUT = "REQUEST_TIMED_OUT"
NETWORK_EXCEPTION = "NETWORK_EXCEPTION"
OUT_OF_ORDER_SEQUENCE_NUMBER = "OUT_OF_ORDER_SEQUENCE_NUMBER"
INVALID_PRODUCER_EPOCH = "INVALID_PRODUCER_EPOCH"
OFFSET_OUT_OF_RANGE = "OFFSET_OUT_OF_RANGE"
INVALID_RECORD = "INVALID_RECORD"          # e.g. a record without a key sent to a compacted topic
FENCED_LEADER_EPOCH = "FENCED_LEADER_EPOCH"
UNKNOWN_LEADER_EPOCH = "UNKNOWN_LEADER_EPOCH"
INVALID_UPDATE_VERSION = "INVALID_UPDATE_VERSION"
INELIGIBLE_REPLICA = "INELIGIBLE_REPLICA"
UNKNOWN_TOPIC_OR_PARTITION = "UNKNOWN_TOPIC_OR_PARTITION"
FETCH_SESSION_ID_NOT_FOUND = "FETCH_SESSION_ID_NOT_FOUND"     # KIP-227: the leader lost the session (restart)
INVALID_FETCH_SESSION_EPOCH = "INVALID_FETCH_SESSION_EPOCH"   # KIP-227: a request out of the session's sequence
DELIVERY_TIMEOUT = "DELIVERY_TIMEOUT"  # client-side: delivery.timeout.ms expired (TimeoutException)
# Access control (acl.py): the request's principal may not do this to the topic, group or transactional id
TOPIC_AUTHORIZATION_FAILED = "TOPIC_AUTHORIZATION_FAILED"
GROUP_AUTHORIZATION_FAILED = "GROUP_AUTHORIZATION_FAILED"
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
AUTHORIZATION_FAILED = frozenset({TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
                                  TRANSACTIONAL_ID_AUTHORIZATION_FAILED})

# Errors after which a write may nevertheless be in the log (the client cannot know): the op is `info`.
OUTCOME_UNKNOWN = frozenset({REQUEST_TIMED_OUT, NETWORK_EXCEPTION, NOT_ENOUGH_REPLICAS_AFTER_APPEND})


@dataclass(slots=True)
class ProduceRequest:
    """One request per broker carries a batch for each partition it leads that the producer drained (Java's
    ``Sender.sendProduceRequest``: ``partitions`` is tp -> Batch, one batch per partition)."""
    corr: int
    partitions: dict
    acks: str
    timeout: float
    reply_to: str = ""


@dataclass(slots=True)
class ProduceResponse:
    """Answered once every partition of the request has its result (Kafka's ``DelayedProduce``): ``results``
    is tp -> (error or None, base offset or -1)."""
    corr: int
    results: dict


@dataclass(slots=True)
class FetchRequest:
    """Kafka's Fetch request: many partitions of one leader in one request (``FetchRequestData``).

    ``partitions`` maps a topic-partition to ``(fetch offset, current leader epoch, last fetched epoch)``: the
    current leader epoch fences a stale leader or fetcher (KIP-320), the last fetched epoch (-1: skip the check)
    lets the leader detect a diverging log (KIP-595's ``lastFetchedEpoch``, as followers send it since 2.7).

    Fetch sessions (KIP-227): ``session_epoch`` -1 is a sessionless full fetch (consumers here); 0 opens a new
    session (a full request: every partition the fetcher wants), closing ``session_id`` if set; a positive epoch
    is an incremental request on session ``session_id``: ``partitions`` holds only the partitions added or whose
    fetch state changed since the last request, ``removed`` the ones the fetcher no longer wants."""
    corr: int
    replica: int                 # the follower's broker id, or -1 for a consumer
    partitions: dict             # tp -> (fetch offset, current leader epoch, last fetched epoch or -1)
    max_wait: float              # replica.fetch.wait.max.ms / fetch.max.wait.ms, in seconds
    min_bytes: int = 1           # replica.fetch.min.bytes / fetch.min.bytes
    max_bytes: int | None = None            # the whole response: replica.fetch.response.max.bytes / fetch.max.bytes
    partition_max_bytes: int | None = None  # one partition: max.partition.fetch.bytes; None: no limit (followers)
    isolation: str = "read_uncommitted"
    session_id: int = 0
    session_epoch: int = -1
    removed: tuple = ()
    reply_to: str = ""


class FetchPartition:
    """One partition of a FetchResponse (``FetchResponseData.PartitionData``); ``fetch_offset`` is the offset the
    leader read from, so a fetcher can tell an answer to a state it has left (AbstractFetcherThread's check)."""

    __slots__ = ("error", "batches", "high_watermark", "log_start", "log_end", "diverging_epoch",
                 "last_stable_offset", "aborted", "fetch_offset")

    def __init__(self, error, batches=(), high_watermark=-1, log_start=0, log_end=-1, diverging_epoch=None,
                 last_stable_offset=-1, aborted=(), fetch_offset=-1):
        self.error = error
        self.batches = batches
        self.high_watermark = high_watermark
        self.log_start = log_start
        self.log_end = log_end
        self.diverging_epoch = diverging_epoch     # (epoch, end offset): truncate before fetching again
        self.last_stable_offset = last_stable_offset
        self.aborted = aborted                     # read_committed: (producer id, first offset) of aborted txns
        self.fetch_offset = fetch_offset

    def __repr__(self):
        return (f"FetchPartition(error={self.error}, {len(self.batches)} batches, hw={self.high_watermark}, "
                f"log_start={self.log_start}, diverging={self.diverging_epoch}, from={self.fetch_offset})")


@dataclass(slots=True)
class FetchResponse:
    """The answer to a FetchRequest: a request-level ``error`` (a fetch session the leader does not know,
    FETCH_SESSION_ID_NOT_FOUND, or at the wrong epoch, INVALID_FETCH_SESSION_EPOCH) or, per partition, a
    FetchPartition. An incremental session's answer leaves out the partitions with nothing new (KIP-227)."""
    corr: int
    error: str | None
    partitions: dict = field(default_factory=dict)   # tp -> FetchPartition
    session_id: int = 0


@dataclass(slots=True)
class MetadataRequest:
    corr: int
    reply_to: str = ""


@dataclass(slots=True)
class MetadataResponse:
    corr: int
    partitions: dict        # tp -> (leader id or -1, leader epoch)
    errors: dict = field(default_factory=dict)   # topic -> error (TOPIC_AUTHORIZATION_FAILED: not described)


@dataclass(slots=True)
class ListOffsetsRequest:
    corr: int
    tp: tuple
    which: str              # "earliest" | "latest"
    reply_to: str = ""
    isolation: str = "read_uncommitted"   # latest is the LSO for read_committed


@dataclass(slots=True)
class ListOffsetsResponse:
    corr: int
    tp: tuple
    error: str | None
    offset: int = -1
    leader_epoch: int = -1


@dataclass(slots=True)
class ApiVersionsRequest:
    """The first request on a new connection: edsim uses it as the connection's handshake."""
    corr: int
    reply_to: str = ""


@dataclass(slots=True)
class ApiVersionsResponse:
    corr: int


@dataclass(slots=True)
class InitProducerIdRequest:
    corr: int
    reply_to: str = ""
    transactional_id: str | None = None   # None: an idempotent producer; any broker answers
    timeout: float = 60.0                 # transaction.timeout.ms, in seconds


@dataclass(slots=True)
class InitProducerIdResponse:
    corr: int
    producer_id: int
    producer_epoch: int = 0
    error: str | None = None


@dataclass(slots=True)
class PartitionState:
    """The controller's record of one partition, as the metadata log carries it."""
    tp: tuple
    replicas: tuple
    leader: int
    leader_epoch: int
    isr: tuple
    partition_epoch: int
    elr: tuple = ()                # KIP-966: replicas out of the ISR that still hold every committed record
    last_known_leader: int = -1    # KIP-966: the leader when the ISR last became empty (Java's lastKnownElr)


@dataclass(slots=True)
class BrokerRegistration:
    broker: int
    incarnation: int


@dataclass(slots=True)
class BrokerHeartbeat:
    broker: int
    incarnation: int
    metadata_offset: int


@dataclass(slots=True)
class MetadataUpdate:
    """Records ``start``..``end`` of the metadata log (or, with start 0, a snapshot); applied in order."""
    start: int
    end: int
    records: list


@dataclass(slots=True)
class AlterPartitionRequest:
    corr: int
    broker: int
    tp: tuple
    leader_epoch: int
    partition_epoch: int
    isr: tuple


@dataclass(slots=True)
class AlterPartitionResponse:
    corr: int
    tp: tuple
    error: str | None
    state: PartitionState | None = None


# ---- consumer groups (the classic group protocol: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, ...) ----
NOT_COORDINATOR = "NOT_COORDINATOR"
COORDINATOR_NOT_AVAILABLE = "COORDINATOR_NOT_AVAILABLE"
COORDINATOR_LOAD_IN_PROGRESS = "COORDINATOR_LOAD_IN_PROGRESS"
ILLEGAL_GENERATION = "ILLEGAL_GENERATION"
UNKNOWN_MEMBER_ID = "UNKNOWN_MEMBER_ID"
REBALANCE_IN_PROGRESS = "REBALANCE_IN_PROGRESS"
FENCED_INSTANCE_ID = "FENCED_INSTANCE_ID"
MEMBER_ID_REQUIRED = "MEMBER_ID_REQUIRED"
INVALID_SESSION_TIMEOUT = "INVALID_SESSION_TIMEOUT"   # session.timeout.ms outside the broker's group bounds


@dataclass(slots=True)
class FindCoordinatorRequest:
    corr: int
    group: str                  # the group id, or the transactional id with key_type "transaction"
    reply_to: str = ""
    key_type: str = "group"


@dataclass(slots=True)
class FindCoordinatorResponse:
    corr: int
    error: str | None
    coordinator: int = -1


@dataclass(slots=True)
class JoinGroupRequest:
    corr: int
    group: str
    member_id: str
    instance_id: str | None
    protocols: tuple            # assignor names this member supports, in preference order
    topics: tuple               # subscription
    owned: tuple                # partitions the member owns now (cooperative rebalancing, KIP-429)
    session_timeout: float
    rebalance_timeout: float
    reply_to: str = ""


@dataclass(slots=True)
class JoinGroupResponse:
    corr: int
    error: str | None
    generation: int = -1
    protocol: str = ""
    leader: str = ""
    member_id: str = ""
    members: tuple = ()         # for the leader: (member_id, topics, owned) of every member


@dataclass(slots=True)
class SyncGroupRequest:
    corr: int
    group: str
    generation: int
    member_id: str
    assignments: dict           # the leader's assignment: member_id -> tuple of partitions; {} from followers
    reply_to: str = ""


@dataclass(slots=True)
class SyncGroupResponse:
    corr: int
    error: str | None
    assignment: tuple = ()


@dataclass(slots=True)
class HeartbeatRequest:
    corr: int
    group: str
    generation: int
    member_id: str
    reply_to: str = ""


@dataclass(slots=True)
class HeartbeatResponse:
    corr: int
    error: str | None


@dataclass(slots=True)
class LeaveGroupRequest:
    corr: int
    group: str
    member_id: str
    reply_to: str = ""


@dataclass(slots=True)
class LeaveGroupResponse:
    corr: int
    error: str | None


class OffsetAndEpoch(int):
    """A committed offset that carries the leader epoch of the last record consumed before it (KIP-320:
    OffsetCommit's ``committed_leader_epoch``, Java's ``OffsetAndMetadata.leaderEpoch()``); -1 when unknown.

    An int, so everything that reads offsets (lag, the history, the coordinator's log) keeps working; the
    coordinator stores and returns the object as given, epoch included."""

    def __new__(cls, offset, leader_epoch=-1):
        self = super().__new__(cls, offset)
        self.leader_epoch = int(leader_epoch)
        return self

    def __reduce__(self):
        return OffsetAndEpoch, (int(self), self.leader_epoch)


def leader_epoch_of(offset) -> int:
    """The leader epoch a committed offset carries, or -1 (an offset committed without one)."""
    return getattr(offset, "leader_epoch", -1)


@dataclass(slots=True)
class OffsetCommitRequest:
    corr: int
    group: str
    generation: int             # -1: a consumer outside group management (assign())
    member_id: str
    offsets: dict               # tp -> next offset to consume
    reply_to: str = ""


@dataclass(slots=True)
class OffsetCommitResponse:
    corr: int
    error: str | None


@dataclass(slots=True)
class OffsetFetchRequest:
    corr: int
    group: str
    tps: tuple
    reply_to: str = ""


@dataclass(slots=True)
class OffsetFetchResponse:
    corr: int
    error: str | None
    offsets: dict = field(default_factory=dict)   # tp -> committed offset, or -1


# ---- transactions (KIP-98, KIP-447, KIP-890) ---------------------------------------------------------------
PRODUCER_FENCED = "PRODUCER_FENCED"
CONCURRENT_TRANSACTIONS = "CONCURRENT_TRANSACTIONS"
INVALID_TXN_STATE = "INVALID_TXN_STATE"
INVALID_PRODUCER_ID_MAPPING = "INVALID_PRODUCER_ID_MAPPING"
UNSTABLE_OFFSET_COMMIT = "UNSTABLE_OFFSET_COMMIT"
TRANSACTION_ABORTED = "TRANSACTION_ABORTED"   # client-side: the send's transaction was aborted


@dataclass(slots=True)
class AddPartitionsToTxnRequest:
    corr: int
    transactional_id: str
    producer_id: int
    producer_epoch: int
    partitions: tuple
    reply_to: str = ""


@dataclass(slots=True)
class AddOffsetsToTxnRequest:
    corr: int
    transactional_id: str
    producer_id: int
    producer_epoch: int
    group: str
    reply_to: str = ""


@dataclass(slots=True)
class EndTxnRequest:
    corr: int
    transactional_id: str
    producer_id: int
    producer_epoch: int
    commit: bool
    reply_to: str = ""


@dataclass(slots=True)
class TxnResponse:
    """The answer to AddPartitionsToTxn, AddOffsetsToTxn and EndTxn; EndTxn carries the new epoch (KIP-890)."""
    corr: int
    error: str | None
    producer_epoch: int = -1


@dataclass(slots=True)
class TxnOffsetCommitRequest:
    """Offsets committed inside a transaction, fenced by the group generation (KIP-447)."""
    corr: int
    group: str
    transactional_id: str
    producer_id: int
    producer_epoch: int
    generation: int
    member_id: str
    offsets: dict
    reply_to: str = ""


@dataclass(slots=True)
class WriteTxnMarkersRequest:
    """From a transaction coordinator to a partition leader: write a COMMIT or ABORT marker."""
    corr: int
    tp: tuple
    producer_id: int
    producer_epoch: int
    commit: bool
    reply_to: str = ""


@dataclass(slots=True)
class WriteTxnMarkersResponse:
    corr: int
    tp: tuple
    error: str | None
