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
        partitions, brokers, rows = kafka.controller.partitions, kafka.brokers, self.rows
        while self.running:
            now = self.lab.env.now
            committed = self._committed()
            owners = {}                                 # the first live consumer holding a position owns it
            for c in self._consumers():
                if c.up:
                    for tp in c.positions:
                        owners.setdefault(tp, c)
            for tp in tps:              # (subscripts rather than calls: this runs per partition and sample)
                state = partitions[tp]
                leader = brokers[state.leader] if state.leader in brokers else None
                replica = leader.replicas[tp] if leader is not None and leader.up else None
                if replica is not None:
                    hw, end = replica.hw, replica.log.end
                    transactions = replica.producers
                    lso = replica.last_stable_offset if transactions.ongoing or transactions.completed else hw
                else:
                    hw = lso = end = -1
                owner = owners[tp] if tp in owners else None
                position = owner.positions[tp] if owner is not None else None
                if position is None:
                    position = committed.get(tp, 0)
                lag = hw - position if hw > position else 0
                rows.append((now, tp[1], state.leader, state.leader_epoch, len(state.isr), hw, end,
                             owner.name if owner is not None else "", committed.get(tp, -1), lag, lso,
                             hw - lso if hw > lso else 0))
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
