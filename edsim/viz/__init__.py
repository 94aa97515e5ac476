"""Pictures of a run (matplotlib only). Every function returns a ``matplotlib.figure.Figure`` and never calls
``plt.show()``: a notebook displays the figure it gets, a test inspects it, a panel turns it into a PNG.

``result.plot`` gathers them, as pandas' ``frame.plot`` does: ``result.plot.log(partition=0)``,
``result.plot.timeline()``, ``result.plot.metrics()``.
"""
from __future__ import annotations

import io

from .log import acknowledged, log_figure, lost_records
from .metrics import metrics_figure
from .timeline import fault_spans, timeline_figure

__all__ = ["PlotAccessor", "log_figure", "timeline_figure", "metrics_figure", "lost_records", "acknowledged",
           "fault_spans", "png"]


class PlotAccessor:
    """``result.plot``: the pictures of one finished run."""

    def __init__(self, result):
        self._result = result

    def log(self, partition: int = 0, at: float | None = None, window=None, topic: str | None = None, **kw):
        """Every replica's log of ``partition`` at the end of the run, or at simulated time ``at`` (the run is
        replayed from its seed up to then: same seed, same run), with acknowledged records no replica holds."""
        r = self._result
        if at is None or at >= r.duration:
            state = r.truth.snapshot(partition, topic)
            history = r.history
        else:
            live = r.scenario.start(r.seed)
            if at > 0:
                live.advance(at)
            state = live.truth.snapshot(partition, topic)
            history = live.history
        return log_figure(state, history, window=window, **kw)

    def timeline(self, **kw):
        """Brokers up and down, leaders, ISR size, faults, records acknowledged / read / lost, anomaly cases."""
        return timeline_figure(self._result, **kw)

    def metrics(self, **kw):
        """Throughput, latency percentiles, consumer lag."""
        return metrics_figure(self._result, **kw)

    def __repr__(self):
        return "result.plot: .log(partition=0, at=None, window=None), .timeline(), .metrics()"


def png(fig, dpi: int = 72) -> bytes:
    """The figure as PNG bytes (for an ipywidgets Image)."""
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})   # fast over small
    return out.getvalue()
