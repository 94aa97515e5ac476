"""What the brokers really hold at the end of a run: every replica's log, high watermark and role, and the
controller's record of leaders and ISRs over time. The checker never sees this; pictures and tests do."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class ReplicaSnapshot:
    """One replica at one moment. ``batches`` holds (base, end, leader epoch, kind) with kind "data",
    "committed" / "aborted" / "open" (transactional records, by the fate of their transaction), or "COMMIT" /
    "ABORT" (control records); ``values`` the record values in offset order (-1 for control records; a compacted
    log has gaps between batches). ``segments`` the base offset of each log segment; below ``cleaned_to`` the log
    has been compacted."""
    broker: int
    up: bool
    paused: bool
    role: str
    in_isr: bool
    log_start: int
    log_end: int
    high_watermark: int
    last_stable_offset: int | None
    batches: list = field(default_factory=list)
    values: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    segments: tuple = (0,)
    cleaned_to: int = 0


@dataclass
class PartitionSnapshot:
    """A copy of what one partition's replicas hold at ``time``: pictures draw it after the run has moved on."""
    time: float
    topic: str
    partition: int
    leader: int
    leader_epoch: int
    isr: tuple
    replicas: list


def _kinds(batches) -> list[str]:
    """Each batch's kind; a transactional batch takes the fate of its producer's next control record."""
    kinds = [None] * len(batches)
    fate: dict[int, str] = {}
    for i in range(len(batches) - 1, -1, -1):
        b = batches[i]
        control = getattr(b, "control", None)
        if control:
            kinds[i] = str(control).upper()
            fate[b.producer_id] = "committed" if kinds[i] == "COMMIT" else "aborted"
        elif getattr(b, "transactional", False):
            kinds[i] = fate.get(b.producer_id, "open")
        else:
            kinds[i] = "data"
    return kinds


def snapshot(kafka, topic: str, partition: int = 0) -> PartitionSnapshot:
    """Copy the state of ``(topic, partition)`` on every replica (batches are immutable: copying the list will do)."""
    tp = (topic, partition)
    state = kafka.controller.partitions[tp]
    rows = []
    for bid in state.replicas:
        broker = kafka.brokers[bid]
        replica = broker.replicas[tp]
        log = replica.log
        batches = list(log.batches)
        kinds = _kinds(batches)
        values = np.concatenate([b.values for b in batches]).astype(np.int64) if batches else np.empty(0, np.int64)
        at = 0                                  # (a compacted log has gaps: index by position, not offset)
        for b, kind in zip(batches, kinds):
            if kind in ("COMMIT", "ABORT"):
                values[at:at + len(b)] = -1
            at += len(b)
        lso = getattr(replica, "last_stable_offset", None)     # arrives with transactions (attribute or method)
        lso = lso() if callable(lso) else lso
        rows.append(ReplicaSnapshot(
            broker=bid, up=broker.up, paused=broker.paused, role=(replica.role or "none") if broker.up else "down",
            in_isr=bid in state.isr, log_start=log.start, log_end=log.end, high_watermark=replica.hw,
            last_stable_offset=None if lso is None else int(lso),
            batches=[(b.base, b.end, b.epoch, k) for b, k in zip(batches, kinds)], values=values,
            segments=tuple(log.segments), cleaned_to=log.cleaned_to))
    return PartitionSnapshot(kafka.world.now, topic, partition, state.leader, state.leader_epoch, tuple(state.isr),
                             rows)


class Truth:
    def __init__(self, kafka, topic: str):
        self.topic = topic
        self._kafka = kafka
        self.time = kafka.world.now

    def replicas(self, topic: str | None = None) -> pd.DataFrame:
        """One row per replica of ``topic`` (the workload's by default): broker, whether it is up, its role,
        leader epoch, log start (retention moves it), log end, high watermark, ISR membership, and how far its log
        is compacted (``cleaned_to``; ``segments()`` has the detail)."""
        rows = []
        controller = self._kafka.controller.partitions
        topic_name = topic or self.topic
        for bid, broker in self._kafka.brokers.items():
            for (topic, p), replica in sorted(broker.replicas.items()):
                if topic != topic_name:
                    continue
                state = controller[(topic, p)]
                rows.append({"topic": topic, "partition": p, "broker": bid, "up": broker.up,
                             "role": replica.role if broker.up else "down",
                             "controller_leader": state.leader, "leader_epoch": state.leader_epoch,
                             "log_start": replica.log.start, "log_end": replica.log.end,
                             "high_watermark": replica.hw, "in_isr": bid in state.isr,
                             "cleaned_to": replica.log.cleaned_to})
        return pd.DataFrame(rows).sort_values(["topic", "partition", "broker"], ignore_index=True)

    def segments(self, partition: int = 0, topic: str | None = None) -> pd.DataFrame:
        """One row per segment of each replica of one partition: its base offset, where the next one starts (or
        the log end), its bytes, when its newest batch was appended, whether it is the active segment (never
        cleaned) and whether the cleaner has compacted it (below ``cleaned_to``)."""
        tp = (topic or self.topic, partition)
        rows = []
        for bid in self._kafka.controller.partitions[tp].replicas:
            log = self._kafka.brokers[bid].replicas[tp].log
            table = log.segment_table()
            for k, (base, end, nbytes, newest) in enumerate(table):
                rows.append({"broker": bid, "base": base, "end": end, "bytes": nbytes,
                             "newest": None if newest < 0 else round(newest, 6), "active": k == len(table) - 1,
                             "compacted": end <= log.cleaned_to})
        return pd.DataFrame(rows)

    def log(self, partition: int = 0, broker: int | None = None, topic: str | None = None) -> pd.DataFrame:
        """The records of one replica (by default the leader's, or the first replica's if there is none)."""
        tp = (topic or self.topic, partition)
        state = self._kafka.controller.partitions[tp]
        if broker is None:
            broker = state.leader if state.leader >= 0 else state.replicas[0]
        log = self._kafka.brokers[broker].replicas[tp].log
        if not log.batches:
            return pd.DataFrame({"offset": [], "value": [], "key": [], "leader_epoch": [], "producer_id": []},
                                dtype=np.int64)
        return pd.DataFrame({
            "offset": np.concatenate([np.arange(b.base, b.end, dtype=np.int64) for b in log.batches]),
            "value": np.concatenate([b.values for b in log.batches]),
            "key": np.concatenate([b.keys for b in log.batches]),
            "leader_epoch": np.concatenate([np.full(len(b), b.epoch) for b in log.batches]),
            "producer_id": np.concatenate([np.full(len(b), b.producer_id) for b in log.batches]),
        })

    def leaders(self, topic: str | None = None) -> pd.DataFrame:
        """The controller's changes to ``topic`` (the workload's by default): when each partition got which
        leader, epoch, ISR and ELR (KIP-966's eligible leader replicas: out of the ISR, yet safe to elect)."""
        frame = pd.DataFrame(self._kafka.changes, columns=["time", "topic", "partition", "leader", "leader_epoch",
                                                           "isr", "elr"])
        return frame[frame["topic"] == (topic or self.topic)].reset_index(drop=True)

    def snapshot(self, partition: int = 0, topic: str | None = None) -> PartitionSnapshot:
        """Every replica of one partition, copied now: batches by leader epoch (and transaction state), log end,
        high watermark, last stable offset. ``result.plot.log()`` draws it."""
        return snapshot(self._kafka, topic or self.topic, partition)

    def emptied_isr(self) -> list[tuple]:
        """(topic, partition) of every partition, internal ones included, whose ISR the controller ever emptied:
        then no in-sync replica was left alive, the condition Kafka's durability guarantee rests on, and the next
        leader may lack what was committed (KIP-966's last known leader is elected uncleanly)."""
        return sorted({(topic, partition) for _t, topic, partition, _l, _e, isr, _elr in self._kafka.changes
                       if not isr})

    def offline(self) -> list[tuple]:
        """Partitions without a leader at the end of the run."""
        return [tp for tp, s in self._kafka.controller.partitions.items() if s.leader < 0 and tp[0] == self.topic]

    def __repr__(self):
        return f"Truth(topic={self.topic!r}, at t={self.time:.3f}s; .replicas(), .log(partition, broker), .leaders())"
