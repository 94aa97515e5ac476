"""Kafka's own config names, defaults and rules, checked before anything runs.

Every setting edsim models is declared here once with Kafka's name and Kafka 4.x default. An unknown name fails
with the closest valid one suggested; a value Kafka refuses fails naming the key, the value and what is allowed.
Nothing is silently clamped. ``.ms`` settings keep Kafka's names and units; ``Config.seconds(key)`` converts.
"""
from __future__ import annotations

import difflib
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, Callable


class EdsimWarning(UserWarning):
    """A setting Kafka accepts but that behaves in a way a learner may not expect."""


class ConfigError(ValueError):
    """A config name or value that Kafka (or edsim) does not accept."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str, Any], Any]
    doc: str = ""


# ---- value parsers: each names the key, the value and what is allowed ------------------------------------
def _bad(key, value, allowed):
    return ConfigError(f"{key}={value!r} is not allowed: {key} must be {allowed}")


def _finite(value):
    """A real number (numpy's included), not a bool, not NaN or infinite."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def _plain(value):
    """A number as Python's own int or float (numpy's numbers would show in a scenario's repr)."""
    if type(value) in (int, float):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _whole(value):
    return _finite(value) and value == int(value)


def seed_value(seed) -> int:
    """A run's seed as Python's int (numpy's integers too); bools and anything not whole are refused."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed={seed!r} is not allowed: seed must be a whole number")
    return int(seed)


def non_negative_int(key, value):
    if not _whole(value) or value < 0:
        raise _bad(key, value, "a whole number >= 0")
    return int(value)


def positive_int(key, value):
    if not _whole(value) or value < 1:
        raise _bad(key, value, "a whole number >= 1")
    return int(value)


def non_negative_number(key, value):
    if not _finite(value) or value < 0:
        raise _bad(key, value, "a number >= 0 (and finite)")
    return _plain(value)


def positive_number(key, value):
    if not _finite(value) or not value > 0:
        raise _bad(key, value, "a number > 0 (and finite)")
    return _plain(value)


CLIENT_TICK_MS = 100      # clients look at their timers every 100 ms (edsim/clients/client.py TICK)


def client_timer(key, value):
    """A client timeout or interval: > 0, and no shorter than the clients' tick, which it would act as."""
    value = positive_number(key, value)
    if value < CLIENT_TICK_MS:
        raise ConfigError(f"{key}={value!r} is not allowed: at least {CLIENT_TICK_MS} ms; edsim's clients look at "
                          f"their timers every {CLIENT_TICK_MS} ms, so a shorter {key} would act as "
                          f"{CLIENT_TICK_MS} ms")
    return value


def probability(key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _bad(key, value, "a probability between 0 and 1")
    return float(value)


def boolean(key, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _bad(key, value, "true or false")


def one_of(*allowed):
    """Kafka's ConfigDef.ValidString: case-sensitive."""
    def parse(key, value):
        text = value if isinstance(value, str) else None
        if text not in allowed:
            raise _bad(key, value, "one of " + ", ".join(repr(a) for a in allowed))
        return text
    parse.allowed = allowed              # for the options reference (tools/options_reference.py)
    return parse


def whole_one_of(*allowed):
    """A feature level: one of a few whole numbers."""
    def parse(key, value):
        if isinstance(value, bool) or value not in allowed:
            raise _bad(key, value, "one of " + ", ".join(str(a) for a in allowed))
        return int(value)
    parse.allowed = allowed
    return parse


def acks(key, value):
    """acks accepts 0, 1, all and -1 (a synonym of all), as strings or numbers; edsim keeps "0", "1" or "all"."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text == "-1":
        return "all"
    if text not in ("0", "1", "all"):
        raise _bad(key, value, "one of '0', '1', 'all' (or '-1', the same as 'all')")
    return text


def cleanup_policy(key, value):
    """Kafka's cleanup.policy: a list drawn from delete and compact (as a list, or comma-separated text)."""
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or any(n not in ("delete", "compact") for n in names) \
            or len(set(names)) != len(names):
        raise _bad(key, value, "'delete', 'compact' or 'compact,delete'")
    return ",".join(sorted(names))


def unlimited_or_non_negative(key, value):
    """Kafka's -1 for "no limit" (retention.ms, retention.bytes), else a number >= 0."""
    if value == -1 and not isinstance(value, bool):
        return -1
    return non_negative_number(key, value)


def optional_positive_int(key, value):
    return None if value is None else positive_int(key, value)


def optional_positive_number(key, value):
    return None if value is None else positive_number(key, value)


def optional_text(key, value):
    if value is None or (isinstance(value, str) and value):
        return value
    raise _bad(key, value, "a non-empty string or None")


def principal(key, value):
    """A principal ``Type:name`` (Java's ``SecurityUtils.parseKafkaPrincipal``), e.g. ``User:alice``."""
    if not isinstance(value, str) or not all(value.partition(":")[::2]) or ":" not in value:
        raise _bad(key, value, "a principal 'User:<name>', e.g. 'User:alice'")
    return value


def principal_list(key, value):
    """``super.users``: principals separated by ``;`` (``User:admin;User:ops``), or a list of them."""
    if value is None or value == "":
        return ()
    items = value.split(";") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise _bad(key, value, "principals separated by ';', e.g. 'User:admin;User:ops'")
    return tuple(principal(key, item.strip() if isinstance(item, str) else item) for item in items if item != "")


STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


class Config:
    """A checked set of settings for one component (a topic, a producer, ...)."""

    def __init__(self, kind: str, settings: dict[str, Setting], given: dict | None):
        given = dict(given or {})
        self.kind = kind
        self.explicit = set(given)
        self._values = {}
        for key in given:
            if key not in settings:
                raise unknown_key(kind, key, settings)
        for name, setting in settings.items():
            self._values[name] = setting.parse(name, given[name]) if name in given else setting.default
        for rule in RULES.get(kind, ()):
            rule(self)

    def __getitem__(self, key):
        return self._values[key]

    def get(self, key, default=None):
        return self._values.get(key, default)

    def seconds(self, key) -> float:
        """A ``.ms`` setting in the simulation's unit, seconds."""
        return self._values[key] / 1000.0

    def items(self):
        return self._values.items()

    def as_dict(self) -> dict:
        return dict(self._values)

    def __repr__(self):
        shown = ", ".join(f"{k!r}: {v!r}" for k, v in self._values.items() if k in self.explicit)
        return f"{self.kind}({{{shown}}})"


def unknown_key(kind: str, key: str, settings) -> ConfigError:
    # Kafka's names are lower case: "ACKS" means acks
    by_lower = {name.lower(): name for name in settings}
    close = difflib.get_close_matches(str(key).lower(), list(by_lower), n=1, cutoff=0.5)
    close = [by_lower[c] for c in close]
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return ConfigError(f"unknown {kind} config {key!r}{hint} Known {kind} configs: {', '.join(sorted(settings))}")


def warn(message: str):
    warnings.warn(message, EdsimWarning, stacklevel=3)


# ---- the settings edsim models, with Kafka 4.x defaults (see docs/options.md, generated from them) ---------------------------
def _table(*settings):
    return {s.name: s for s in settings}


TOPIC = _table(
    Setting("partitions", 1, positive_int, "partitions of the topic"),
    Setting("replication.factor", 3, positive_int,
            "copies of each partition (Kafka's broker default default.replication.factor is 1; edsim uses 3,"
            " what production clusters run)"),
    Setting("min.insync.replicas", 1, positive_int, "replicas that must hold a write before acks=all succeeds"),
    Setting("unclean.leader.election.enable", False, boolean, "may an out-of-sync replica become leader"),
    Setting("flush.messages", None, optional_positive_int,
            "fsync the log once this many records are unflushed; None (Kafka: Long.MAX_VALUE) leaves it to the OS"),
    Setting("flush.ms", None, optional_positive_number,
            "fsync a log whose last flush is this old, checked every log.flush.scheduler.interval.ms; None: never"),
    Setting("cleanup.policy", "delete", cleanup_policy,
            "delete: old segments go after retention.ms / retention.bytes; compact: only the last record of each "
            "key is kept (and tombstones for delete.retention.ms); compact,delete: both"),
    Setting("retention.ms", 604800000, unlimited_or_non_negative,
            "a closed segment whose newest record is this old is deleted (-1: never)"),
    Setting("retention.bytes", -1, unlimited_or_non_negative,
            "oldest closed segments are deleted while the partition's log is larger (-1: no limit)"),
    Setting("segment.bytes", 1073741824, positive_int,
            "a new segment starts when the active one would grow past this; only closed segments are cleaned"),
    Setting("segment.ms", 604800000, positive_number,
            "a new segment starts when the active one's first record is this old"),
    Setting("min.cleanable.dirty.ratio", 0.5, probability,
            "the cleaner compacts a log once this share of its cleanable bytes is dirty (not yet compacted)"),
    Setting("min.compaction.lag.ms", 0, non_negative_number,
            "a record stays uncompacted at least this long"),
    Setting("max.compaction.lag.ms", None, optional_positive_number,
            "a log with a record dirty this long is compacted whatever its dirty ratio; None (Kafka: "
            "Long.MAX_VALUE): never forced"),
    Setting("delete.retention.ms", 86400000, non_negative_number,
            "how long a tombstone survives once the cleaner has compacted past it, so readers can see the delete"),
)

BROKER = _table(
    Setting("min.insync.replicas", 1, positive_int,
            "the broker default for topics that do not set it: replicas that must hold a write before acks=all "
            "succeeds"),
    Setting("unclean.leader.election.enable", False, boolean,
            "the broker default for topics that do not set it: may an out-of-sync replica become leader"),
    Setting("replica.lag.time.max.ms", 30000, non_negative_number,
            "a follower that has not caught up to the leader's log end for this long leaves the ISR"),
    Setting("replica.fetch.wait.max.ms", 500, non_negative_number,
            "how long the leader holds a follower's fetch that has fewer than replica.fetch.min.bytes new"),
    Setting("replica.fetch.min.bytes", 1, positive_int,
            "the leader holds a follower's fetch (up to replica.fetch.wait.max.ms) until this many bytes are new "
            "across its partitions"),
    Setting("replica.fetch.response.max.bytes", 10485760, positive_int,
            "the most one answer to a follower's fetch carries over all its partitions, in whole record batches, "
            "but always the first batch"),
    Setting("replica.fetch.backoff.ms", 1000, non_negative_number,
            "how long a follower waits after a failed fetch before the next (a partition's error delays only that "
            "partition)"),
    Setting("replica.socket.timeout.ms", 30000, positive_number,
            "how long a follower waits for the answer to a fetch before it gives up on it"),
    Setting("replica.high.watermark.checkpoint.interval.ms", 5000, positive_number,
            "how often a broker writes each partition's high watermark to disk (what survives a crash)"),
    Setting("broker.session.timeout.ms", 9000, positive_number,
            "the controller fences a broker it has not heard a heartbeat from for this long"),
    Setting("broker.heartbeat.interval.ms", 2000, positive_number,
            "how often a broker sends the controller a heartbeat"),
    Setting("controller.socket.timeout.ms", 30000, positive_number,
            "how long a broker waits for the controller to answer (a heartbeat, AlterPartition) before it gives "
            "up on the connection and opens a new one"),
    Setting("auto.create.topics.enable", True, boolean,
            "a topic a client names that does not exist is created with the broker's defaults"),
    Setting("group.initial.rebalance.delay.ms", 3000, non_negative_number,
            "an empty group's first rebalance waits this long for more members"),
    Setting("group.min.session.timeout.ms", 6000, positive_number,
            "the shortest session.timeout.ms a consumer may ask for: the coordinator refuses a JoinGroup below it "
            "with INVALID_SESSION_TIMEOUT"),
    Setting("group.max.session.timeout.ms", 1800000, positive_number,
            "the longest session.timeout.ms a consumer may ask for (INVALID_SESSION_TIMEOUT above it)"),
    Setting("offsets.commit.timeout.ms", 5000, positive_number,
            "how long the group coordinator waits for an offset commit to be replicated before it fails it"),
    Setting("offsets.topic.num.partitions", 50, positive_int, "partitions of __consumer_offsets"),
    Setting("offsets.topic.replication.factor", 3, positive_int, "replicas of each __consumer_offsets partition"),
    Setting("transaction.state.log.num.partitions", 50, positive_int, "partitions of __transaction_state"),
    Setting("transaction.state.log.replication.factor", 3, positive_int,
            "replicas of each __transaction_state partition"),
    Setting("transaction.state.log.min.isr", 2, positive_int, "min.insync.replicas of __transaction_state"),
    Setting("transaction.max.timeout.ms", 900000, positive_number,
            "the longest transaction.timeout.ms a producer may ask for"),
    Setting("transaction.abort.timed.out.transaction.cleanup.interval.ms", 10000, positive_number,
            "how often the coordinator looks for transactions older than their timeout, to abort them"),
    Setting("transaction.version", 2, whole_one_of(1, 2),
            "the cluster's transaction.version feature (kafka-features): 2 = KIP-890, the producer epoch is "
            "bumped at the end of every transaction; 1 = the epoch stays, as before Kafka 4.0"),
    Setting("log.cleaner.enable", True, boolean, "run the log cleaner (compaction) on this broker"),
    Setting("log.cleaner.backoff.ms", 15000, positive_number,
            "how long the cleaner sleeps when no log needs cleaning"),
    Setting("log.retention.check.interval.ms", 300000, positive_number,
            "how often the broker deletes segments past retention.ms / retention.bytes"),
    Setting("log.flush.scheduler.interval.ms", None, optional_positive_number,
            "how often the log flusher looks for logs due a flush.ms fsync; None (Kafka: Long.MAX_VALUE): never"),
    Setting("edsim.os.dirty.expire.ms", 30000, non_negative_number,
            "Linux's vm.dirty_expire_centisecs: a page appended this long ago has been written back, so a power "
            "loss keeps it"),
    Setting("eligible.leader.replicas.version", 1, whole_one_of(0, 1),
            "the cluster's eligible.leader.replicas.version feature (kafka-features): 1 = KIP-966's eligible leader "
            "replicas, the default for new clusters since Kafka 4.1; 0 = as before (Kafka 4.0 and earlier)"),
    Setting("edsim.legacy.truncation", "leader-epoch", one_of("leader-epoch", "high-watermark"),
            "how a follower finds where its log diverges: KIP-101/279 leader epochs, or the pre-0.11 high watermark"),
    Setting("authorizer.class.name", "", one_of("", STANDARD_AUTHORIZER),
            "the authorizer: '' (none: every request is allowed) or " + STANDARD_AUTHORIZER + ", which judges "
            "requests against the cluster's ACLs (edsim.acl, Scenario acls=[...])"),
    Setting("allow.everyone.if.no.acl.found", False, boolean,
            "with an authorizer: is a resource that no ACL matches open to everyone (false: denied)"),
    Setting("super.users", (), principal_list,
            "principals allowed everything whatever the ACLs say, separated by ';' ('User:admin;User:ops')"),
    Setting("edsim.network.latency.ms", 0.5, non_negative_number, "one-way network latency"),
    Setting("edsim.network.jitter.ms", 0.1, non_negative_number, "mean of the exponential jitter added"),
    Setting("edsim.debug.invariants", False, boolean, "assert WeakIsr and StrongIsr after every change"),
)

# What every client shares (Java's CommonClientConfigs).
CLIENT = (
    Setting("request.timeout.ms", 30000, client_timer,
            "how long a client waits for the answer to a request before it counts it failed"),
    Setting("retry.backoff.ms", 100, non_negative_number,
            "the first wait before a retry (it grows exponentially up to retry.backoff.max.ms)"),
    Setting("retry.backoff.max.ms", 1000, non_negative_number,
            "the longest wait before a retry: a producer's batch, the group protocol's lookups (KIP-580)"),
    Setting("metadata.max.age.ms", 300000, positive_number,
            "how often a client refreshes its metadata (partitions, leaders) when nothing failed"),
    Setting("reconnect.backoff.ms", 50, non_negative_number,
            "the first wait before reconnecting to a broker after a connection failed or timed out (it doubles up "
            "to reconnect.backoff.max.ms; Kafka adds 20% jitter, edsim does not)"),
    Setting("reconnect.backoff.max.ms", 1000, non_negative_number,
            "the longest wait before reconnecting to a broker"),
    Setting("edsim.principal", "User:ANONYMOUS", principal,
            "who the client is to the brokers' authorizer: stands for the identity SASL or mutual TLS "
            "authenticates (Kafka's User:ANONYMOUS on a PLAINTEXT listener)"),
)

PRODUCER = _table(
    Setting("acks", "all", acks,
            "when the leader answers a produce: 0 never waited for, 1 once it wrote the batch, all once every ISR "
            "member holds it"),
    Setting("enable.idempotence", True, boolean,
            "producer id and sequence numbers: the broker drops retried duplicates and refuses gaps (needs "
            "acks=all)"),
    Setting("retries", 2147483647, non_negative_int,
            "how often a failed batch is sent again (within delivery.timeout.ms)"),
    Setting("max.in.flight.requests.per.connection", 5, positive_int,
            "produce requests a producer has unanswered per broker; above 1 without idempotence, retries "
            "can reorder"),
    Setting("delivery.timeout.ms", 120000, non_negative_number,
            "how long a record may take from send() to its acknowledgement, retries included, before it fails"),
    *CLIENT,
    Setting("linger.ms", 5, non_negative_number,
            "how long a partition's first batch waits for more records before the sender may take it (unless "
            "it is full); a batch keeps filling until the sender drains it"),
    Setting("batch.size", 16384, positive_int,
            "the most bytes of records one batch holds (per partition)"),
    Setting("max.request.size", 1048576, positive_int,
            "the most bytes of batches one produce request carries (one request per broker, a batch per "
            "partition it leads)"),
    Setting("transactional.id", None, optional_text,
            "names the producer across restarts for transactions and zombie fencing (none: not transactional)"),
    Setting("transaction.timeout.ms", 60000, positive_number,
            "the coordinator aborts a transaction open longer than this"),
)

ASSIGNORS = ("range", "roundrobin", "cooperative-sticky")


def assignors(key, value):
    allowed = ASSIGNORS
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or any(n not in allowed for n in names):
        raise _bad(key, value, "a list drawn from 'range', 'roundrobin', 'cooperative-sticky'")
    return tuple(names)


CONSUMER = _table(
    Setting("group.id", None, optional_text, "the consumer group (none: the consumer assigns partitions itself)"),
    Setting("group.instance.id", None, optional_text,
            "static membership (KIP-345): a restart within session.timeout.ms keeps the member's partitions"),
    Setting("partition.assignment.strategy", ("range", "cooperative-sticky"), assignors,
            "Kafka's default list: range is used until every member offers cooperative-sticky"),
    Setting("isolation.level", "read_uncommitted", one_of("read_uncommitted", "read_committed"),
            "read_committed stops at the last stable offset and skips aborted records"),
    Setting("auto.offset.reset", "latest", one_of("earliest", "latest", "none"),
            "where to start without a committed offset (the workload's consumers use earliest unless set)"),
    Setting("enable.auto.commit", True, boolean, "commit the polled offsets every auto.commit.interval.ms"),
    Setting("auto.commit.interval.ms", 5000, non_negative_number, "how often auto-commit commits"),
    Setting("session.timeout.ms", 45000, positive_number,
            "the coordinator removes a member it has not heard a heartbeat from for this long"),
    Setting("heartbeat.interval.ms", 3000, client_timer, "how often a member sends its coordinator a heartbeat"),
    Setting("max.poll.interval.ms", 300000, positive_number,
            "a member that does not poll for this long leaves the group"),
    Setting("max.poll.records", 500, positive_int, "the most records one poll returns"),
    Setting("fetch.min.bytes", 1, positive_int,
            "the broker holds a fetch (up to fetch.max.wait.ms) until this many bytes are readable across its "
            "partitions"),
    Setting("fetch.max.wait.ms", 500, non_negative_number,
            "how long the broker holds a fetch that has fewer than fetch.min.bytes to return"),
    Setting("fetch.max.bytes", 52428800, positive_int,
            "the most one fetch returns over all its partitions, in whole record batches, but always the first "
            "batch"),
    Setting("max.partition.fetch.bytes", 1048576, positive_int,
            "the most a fetch returns of one partition, in whole record batches, but always the first batch "
            "(KIP-74); a record's size is the producer's record_size"),
    *CLIENT,
)


# ---- rules between settings, checked when a Config is built ----------------------------------------------
def _heartbeat_below_session(config):
    """The Java client refuses a heartbeat interval that is not below the session timeout when the consumer is
    built (``org.apache.kafka.clients.consumer.internals.Heartbeat``: "Heartbeat must be set lower than the
    session timeout"); the consumer docs recommend no more than a third of it."""
    hb, session = config["heartbeat.interval.ms"], config["session.timeout.ms"]
    if hb >= session:
        raise ConfigError(f"heartbeat.interval.ms={hb!r} is not allowed with session.timeout.ms={session!r}: "
                          "heartbeat.interval.ms must be lower than session.timeout.ms (typically no more than "
                          "a third of it)")


def _group_session_bounds(config):
    low, high = config["group.min.session.timeout.ms"], config["group.max.session.timeout.ms"]
    if low > high:
        raise ConfigError(f"group.min.session.timeout.ms={low!r} is not allowed with group.max.session.timeout.ms="
                          f"{high!r}: the minimum must not exceed the maximum")


RULES: dict[str, tuple] = {"consumer": (_heartbeat_below_session,), "broker": (_group_session_bounds,)}
