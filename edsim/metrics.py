"""Time series of a run: sampled from the brokers while it runs, and binned from the history afterwards."""
from __future__ import annotations

import numpy as np
import pandas as pd


class Sampler:
    """Reads the cluster every ``interval`` simulated seconds (state the checker may not use, pictures may)."""

    def __init__(self, lab, topic, consumers, interval):
        self.lab, self.topic, self.interval = lab, topic, interval
        self._consumers = consumers if callable(consumers) else (lambda: consumers)   # the members may come later
        self.rows = []
        self.running = True
        lab.env.process(self._run())

    def _committed(self):
        """The workload group's committed offsets, as its coordinator holds them (truth, not history)."""
        consumers = self._consumers()
        group = consumers[0].membership.group if consumers and consumers[0].membership else None
        for broker in self.lab.kafka.brokers.values():
            g = broker.coordinator.groups.get(group) if broker.up and group else None
            if g is not None and broker.coordinator._replica(group) is not None:
                return g.offsets
        return {}

    def _run(self):
        kafka = self.lab.kafka
        tps = kafka.partitions(self.topic)
        while self.running:
            now = self.lab.env.now
            committed = self._committed()
            consumers = self._consumers()
            for tp in tps:
                state = kafka.controller.partitions[tp]
                leader = kafka.brokers.get(state.leader)
                replica = leader.replicas[tp] if leader is not None and leader.up else None
                hw = replica.hw if replica is not None else -1
                lso = replica.last_stable_offset if replica is not None else -1
                owner = next((c for c in consumers if c.up and tp in c.positions), None)
                position = owner.positions.get(tp) if owner is not None else None
                if position is None:
                    position = committed.get(tp, 0)
                lag = max(hw - position, 0) if hw >= 0 else 0
                self.rows.append((now, tp[1], state.leader, state.leader_epoch, len(state.isr), hw,
                                  replica.log.end if replica is not None else -1,
                                  owner.name if owner is not None else "", committed.get(tp, -1), lag, lso,
                                  max(hw - lso, 0)))
            yield self.lab.env.timeout(self.interval)

    def partition_frame(self) -> pd.DataFrame:
        """Per partition and sample: leader, epoch, ISR size, high watermark, log end, the consumer that owns it
        (empty while nobody does: a crashed owner, or a rebalance), the committed offset and the lag; the last
        stable offset, and how far it trails the high watermark (records read_committed consumers cannot read
        yet: open transactions)."""
        return pd.DataFrame(self.rows, columns=["time", "partition", "leader", "leader_epoch", "isr_size",
                                                "high_watermark", "log_end", "owner", "committed",
                                                "consumer_lag", "last_stable_offset", "lso_lag"])


def cluster_frame(per_partition: pd.DataFrame, history: pd.DataFrame, interval: float) -> pd.DataFrame:
    """One row per interval: acknowledgements and polls per second, ack latency, ISR, HW and consumer lag."""
    if per_partition.empty:
        return pd.DataFrame()
    grouped = per_partition.groupby("time")
    frame = pd.DataFrame({
        "isr_size": grouped["isr_size"].min(),
        "high_watermark": grouped["high_watermark"].sum(),
        "consumer_lag": grouped["consumer_lag"].sum(),
        "lso_lag": grouped["lso_lag"].sum(),
        "offline_partitions": grouped["leader"].apply(lambda s: int((s < 0).sum())),
        "unowned_partitions": grouped["owner"].apply(lambda s: int((s == "").sum())),
    })
    edges = np.append(frame.index.to_numpy(), frame.index.to_numpy()[-1] + interval)
    sends = history[(history["f"] == "send") & (history["type"] == "ok") & (history["process"] != "catch-up")]
    bins = np.searchsorted(edges, sends["time"].to_numpy(), side="right") - 1
    valid = (bins >= 0) & (bins < len(frame))
    latency = (sends["time"].to_numpy() - sends["invoke_time"].to_numpy()) * 1000
    acked = np.bincount(bins[valid], minlength=len(frame))
    frame.insert(0, "acked_per_s", acked / interval)
    p50 = np.full(len(frame), np.nan)
    p99 = np.full(len(frame), np.nan)
    if valid.any():
        lat = pd.Series(latency[valid]).groupby(bins[valid])
        q = lat.quantile(0.5)
        p50[q.index] = q.to_numpy()
        q = lat.quantile(0.99)
        p99[q.index] = q.to_numpy()
    frame.insert(1, "latency_p50_ms", p50)
    frame.insert(2, "latency_p99_ms", p99)
    polls = history[(history["f"] == "poll") & (history["process"] != "catch-up")]
    pbins = np.searchsorted(edges, polls["time"].to_numpy(), side="right") - 1
    pvalid = (pbins >= 0) & (pbins < len(frame))
    frame.insert(3, "polled_per_s", np.bincount(pbins[pvalid], minlength=len(frame)) / interval)
    frame.index.name = "time"
    return frame.reset_index()
