"""Metrics of a run over time: throughput, acknowledgement latency percentiles, consumer lag and ISR size."""
from __future__ import annotations

from matplotlib.figure import Figure

from .timeline import FAULT_COLOURS, fault_spans


def metrics_figure(result, figsize=None) -> Figure:
    """Three panels sharing the time axis, with the faults shaded as in the timeline."""
    m = result.metrics
    fig = Figure(figsize=figsize or (10, 6), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    if len(m):
        axes[0].plot(m["time"], m["acked_per_s"], label="acknowledged / s")
        axes[0].plot(m["time"], m["polled_per_s"], label="read / s")
        axes[1].plot(m["time"], m["latency_p50_ms"], label="p50")
        axes[1].plot(m["time"], m["latency_p99_ms"], label="p99")
        axes[2].plot(m["time"], m["consumer_lag"], label="consumer lag")
        isr = axes[2].twinx()
        isr.step(m["time"], m["isr_size"], where="post", color="grey", linestyle="--", label="min ISR size")
        isr.set_ylabel("ISR size", fontsize=8)
        isr.set_ylim(0, result.scenario.brokers + 0.5)
        isr.legend(fontsize=7, loc="upper right", frameon=False)
    axes[0].set_ylabel("records / s", fontsize=8)
    axes[0].set_title("throughput", fontsize=9, loc="left")
    axes[1].set_ylabel("ms", fontsize=8)
    axes[1].set_title("acknowledgement latency (send to ack) by when it was acknowledged", fontsize=9, loc="left")
    axes[2].set_ylabel("records", fontsize=8)
    axes[2].set_title("consumer lag (high watermark minus the group's position)", fontsize=9, loc="left")
    axes[2].set_xlabel("simulated seconds")
    for ax in axes:
        for start, stop, fault, _ in fault_spans(result):
            ax.axvspan(start, stop, color=FAULT_COLOURS.get(fault.kind, "grey"), alpha=0.12, linewidth=0)
        ax.legend(fontsize=7, loc="upper left", frameon=False)
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, result.duration)
    return fig
