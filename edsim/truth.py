"""What the brokers really hold at the end of a run: every replica's log, high watermark and role, and the
controller's record of leaders and ISRs over time. The checker never sees this; pictures and tests do."""
from __future__ import annotations

import numpy as np
import pandas as pd


class Truth:
    def __init__(self, kafka, topic: str):
        self.topic = topic
        self._kafka = kafka
        self.time = kafka.world.now

    def replicas(self, topic: str | None = None) -> pd.DataFrame:
        """One row per replica of ``topic`` (the workload's by default): broker, whether it is up, its role,
        leader epoch, log end, high watermark, ISR membership."""
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
                             "log_end": replica.log.end, "high_watermark": replica.hw,
                             "in_isr": bid in state.isr})
        return pd.DataFrame(rows).sort_values(["topic", "partition", "broker"], ignore_index=True)

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
            "offset": np.arange(log.start, log.end, dtype=np.int64),
            "value": np.concatenate([b.values for b in log.batches]),
            "key": np.concatenate([b.keys for b in log.batches]),
            "leader_epoch": np.concatenate([np.full(len(b), b.epoch) for b in log.batches]),
            "producer_id": np.concatenate([np.full(len(b), b.producer_id) for b in log.batches]),
        })

    def leaders(self, topic: str | None = None) -> pd.DataFrame:
        """The controller's changes to ``topic`` (the workload's by default): when each partition got which
        leader, epoch and ISR."""
        frame = pd.DataFrame(self._kafka.changes, columns=["time", "topic", "partition", "leader", "leader_epoch",
                                                           "isr"])
        return frame[frame["topic"] == (topic or self.topic)].reset_index(drop=True)

    def offline(self) -> list[tuple]:
        """Partitions without a leader at the end of the run."""
        return [tp for tp, s in self._kafka.controller.partitions.items() if s.leader < 0 and tp[0] == self.topic]

    def __repr__(self):
        return f"Truth(topic={self.topic!r}, at t={self.time:.3f}s; .replicas(), .log(partition, broker), .leaders())"
