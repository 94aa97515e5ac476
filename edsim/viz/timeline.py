"""The timeline of a run: which broker was up, who led, how big the ISR was, when faults struck, and what the
clients were told (records acknowledged, read, and later found lost), with every anomaly case where it happened."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

FAULT_COLOURS = {"crash": "#d62728", "isolate": "#9467bd", "partition": "#7f7f7f", "pause": "#ff7f0e",
                 "slow": "#bcbd22", "drop": "#17becf"}


def fault_spans(result) -> list[tuple]:
    """(start, end, fault, node names) for every fault the nemesis applied; the end is when it healed (its
    duration, or the heal before the catch-up), or the end of the run for a crash without restart."""
    h = result.history
    heals = h[(h["process"] == "nemesis") & h["detail"].str.startswith("heal ")]
    heal_rows = list(zip(heals["time"].to_numpy(), heals["detail"].to_numpy()))
    spans = []
    for start, fault, names in result.faults:
        end = None
        for t, detail in heal_rows:
            if t >= start and detail == f"heal {fault!r}":
                end = t
                heal_rows.remove((t, detail))
                break
        if end is None:
            end = result.duration
        spans.append((float(start), float(end), fault, names))
    return spans


def timeline_figure(result, figsize=None) -> Figure:
    """Brokers up and down, leader and ISR size per partition, faults shaded, records acknowledged / read /
    lost over time, anomaly cases marked."""
    truth = result.truth
    brokers = list(range(1, result.scenario.brokers + 1))
    spans = fault_spans(result)
    end = result.duration
    fig = Figure(figsize=figsize or (10, 7.5), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True, height_ratios=[1.2, 1, 0.8, 1.6])

    # 1. brokers: a bar per broker, broken where a fault hit it
    ax = axes[0]
    for b in brokers:
        ax.broken_barh([(0, end)], (b - 0.35, 0.7), color="#b9e3b0")
    for start, stop, fault, names in spans:
        for name in names:
            if name.startswith("broker-"):
                b = int(name.split("-")[1])
                ax.broken_barh([(start, max(stop - start, end / 400))], (b - 0.35, 0.7),
                               color=FAULT_COLOURS.get(fault.kind, "grey"))
                ax.text(start, b, f" {fault.kind}", va="center", fontsize=7)
    ax.set_yticks(brokers, [f"broker {b}" for b in brokers], fontsize=8)
    ax.set_ylim(0.4, len(brokers) + 0.6)
    ax.invert_yaxis()
    ax.set_title("brokers (green: up and reachable; colour: the fault that hit them)", fontsize=9, loc="left")

    # 2. leader per partition, 3. ISR size per partition
    leaders = truth.leaders()
    for p, g in leaders.groupby("partition"):
        t = np.append(g["time"].to_numpy(), end)
        lead = np.append(g["leader"].to_numpy(), g["leader"].to_numpy()[-1]).astype(float)
        lead[lead < 0] = np.nan
        isr = np.append(g["isr"].map(len).to_numpy(), len(g["isr"].iloc[-1]))
        axes[1].step(t, lead, where="post", label=f"partition {p}")
        axes[2].step(t, isr, where="post", label=f"partition {p}")
    axes[1].set_yticks(brokers)
    axes[1].set_ylabel("leader", fontsize=8)
    axes[1].set_ylim(0.5, len(brokers) + 0.5)
    axes[2].set_ylabel("ISR size", fontsize=8)
    axes[2].set_ylim(0, len(brokers) + 0.5)
    if leaders["partition"].nunique() > 1:
        axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)

    # 4. records: acknowledged, read, lost (by the time they were acknowledged), anomaly cases
    ax = axes[3]
    h = result.history
    sends = h[(h["f"] == "send") & (h["type"] == "ok")].drop_duplicates("value", keep="last")
    polls = h[(h["f"] == "poll") & (h["process"] != "catch-up")].drop_duplicates("value")
    ax.step(np.sort(sends["time"].to_numpy()), np.arange(1, len(sends) + 1), where="post", label="acknowledged")
    ax.step(np.sort(polls["time"].to_numpy()), np.arange(1, len(polls) + 1), where="post", label="read")
    lost = result.anomaly_cases.get("lost-write")
    if lost is not None and len(lost) and "time" in lost:
        t = np.sort(lost["time"].to_numpy())
        ax.step(t, np.arange(1, len(t) + 1), where="post", color="#e41a1c", label="acknowledged, later lost")
    top = max(len(sends), 1)
    marked = [(name, cases) for name, cases in result.anomaly_cases.items()
              if cases is not None and len(cases) and "time" in cases and result.anomalies.get(name)]
    for i, (name, cases) in enumerate(marked):
        t = cases["time"].dropna().to_numpy()
        ax.plot(t, np.full(len(t), top * (1.05 + 0.07 * i)), "|", markersize=8, label=f"{name} ({len(cases)})")
    ax.set_ylabel("records", fontsize=8)
    ax.set_xlabel("simulated seconds")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)

    for ax in axes:
        for start, stop, fault, _names in spans:
            ax.axvspan(start, stop, color=FAULT_COLOURS.get(fault.kind, "grey"), alpha=0.12, linewidth=0)
        ax.set_xlim(0, end)
        ax.tick_params(labelsize=8)
    return fig
