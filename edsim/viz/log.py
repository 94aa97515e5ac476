"""The replica-log picture: each replica of one partition as a row of cells, one per offset, coloured by the
leader epoch that wrote it, with the high watermark, the log end and the last stable offset marked, and under them
a row for the records the producer was told were written and that no replica holds any more.

That last row is the picture to remember: an acknowledgement is a promise, and here is where it was broken.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

EPOCH_COLOURS = ["#4c72b0", "#55a868", "#dd8452", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
                 "#64b5cd", "#2f4b7c"]
KIND_COLOURS = {"aborted": "#d9d9d9", "open": "#f2e6bf", "COMMIT": "#111111", "ABORT": "#7f0000"}
KIND_LABELS = {"aborted": "aborted transaction", "open": "open transaction", "COMMIT": "commit marker",
               "ABORT": "abort marker"}
LOST_COLOUR = "#e41a1c"
_KIND_CODE = {k: len(EPOCH_COLOURS) + i for i, k in enumerate(KIND_COLOURS)}
_LOST_CODE = len(EPOCH_COLOURS) + len(KIND_COLOURS)
_CMAP = ListedColormap(EPOCH_COLOURS + list(KIND_COLOURS.values()) + [LOST_COLOUR]).with_extremes(bad="white")


def acknowledged(history, topic: str, partition: int, until: float | None = None):
    """(offsets, values) of the sends of ``topic``/``partition`` acknowledged by ``until`` (the end if None)."""
    h = history
    mask = (h["f"] == "send") & (h["type"] == "ok") & (h["partition"] == partition) & (h["offset"] >= 0)
    if "topic" in h:
        mask &= h["topic"].astype(str) == topic
    if until is not None:
        mask &= h["time"] <= until
    sends = h.loc[mask, ["offset", "value"]].drop_duplicates("value", keep="last")
    return sends["offset"].to_numpy(np.int64), sends["value"].to_numpy(np.int64)


def lost_records(state, history):
    """(offsets, values) acknowledged by ``state.time`` and held by no replica of the partition now, but for
    those a log cleaner removed by the topic's rules (compaction, retention: gaps, not losses)."""
    offsets, values = acknowledged(history, state.topic, state.partition, state.time)
    held = np.concatenate([r.values for r in state.replicas]) if state.replicas else np.empty(0, np.int64)
    h = history
    cleaned = h["f"].isin(["compact", "retention"]) & (h["time"] <= state.time)
    gone = ~np.isin(values, held) & ~np.isin(values, h.loc[cleaned, "value"].to_numpy())
    return offsets[gone], values[gone]


def log_figure(state, history=None, window=None, title=None, figsize=None) -> Figure:
    """Draw a ``PartitionSnapshot`` (``truth.snapshot()``). ``history`` (a Result's or LiveRun's) adds the row of
    acknowledged records no replica holds; ``window=(first, last)`` shows only those offsets."""
    lost_offsets, _ = lost_records(state, history) if history is not None else (np.empty(0, np.int64), None)
    ends = [r.log_end for r in state.replicas] + [int(lost_offsets.max()) + 1 if len(lost_offsets) else 0]
    starts = [r.log_start for r in state.replicas]
    lo, hi = (min(starts, default=0), max(max(ends, default=0), 1)) if window is None else \
        (int(window[0]), int(window[1]) + 1)
    width = max(hi - lo, 1)
    rows = len(state.replicas) + 1
    grid = np.full((rows, width), np.nan)
    epochs, kinds = set(), set()
    for i, r in enumerate(state.replicas):
        for base, end, epoch, kind in r.batches:
            a, b = max(base, lo), min(end, hi)
            if a >= b:
                continue
            if kind in _KIND_CODE:
                grid[i, a - lo:b - lo] = _KIND_CODE[kind]
                kinds.add(kind)
            else:
                grid[i, a - lo:b - lo] = epoch % len(EPOCH_COLOURS)
                epochs.add(epoch)
    shown = lost_offsets[(lost_offsets >= lo) & (lost_offsets < hi)]
    grid[rows - 1, shown - lo] = _LOST_CODE

    height = 0.55 * rows + 1.1
    fig = Figure(figsize=figsize or (10, height))
    # fixed margins (labels left, legend right): constrained layout would double the drawing time
    fig.subplots_adjust(left=0.2, right=0.8, top=1 - 0.4 / height, bottom=0.5 / height)
    ax = fig.add_subplot()
    ax.imshow(grid, cmap=_CMAP, vmin=-0.5, vmax=_LOST_CODE + 0.5, aspect="auto", interpolation="nearest",
              extent=(lo, lo + width, rows - 0.5, -0.5))
    if width <= 120:                                   # few enough offsets to see every cell
        ax.vlines(np.arange(lo, lo + width + 1), -0.5, rows - 0.5, colors="white", linewidth=0.6)
    ax.hlines(np.arange(rows) + 0.5, lo, lo + width, colors="white", linewidth=3)
    for i, r in enumerate(state.replicas):
        if not r.up or r.paused:
            ax.axhspan(i - 0.5, i + 0.5, color="black", alpha=0.25 if not r.up else 0.1, linewidth=0)
        if r.up:                                        # a crashed broker's high watermark is not in memory
            ax.vlines(r.high_watermark, i - 0.45, i + 0.45, colors="black", linewidth=2.5)
        if lo <= r.log_end <= lo + width:             # outside the window the marker would stretch the figure
            ax.plot([r.log_end], [i], marker="<", color="black", markersize=7, clip_on=False)
        if r.last_stable_offset is not None:
            ax.vlines(r.last_stable_offset, i - 0.45, i + 0.45, colors="black", linewidth=1.5, linestyles=":")
        if len(r.segments) > 1:                        # segment boundaries; the compacted part is hatched
            inside = [s for s in r.segments[1:] if lo < s < lo + width]
            ax.vlines(inside, i - 0.5, i + 0.5, colors="grey", linewidth=0.8)
        if r.cleaned_to > max(r.log_start, lo):
            ax.add_patch(Rectangle((max(r.log_start, lo), i - 0.45), min(r.cleaned_to, lo + width) - max(r.log_start, lo),
                                   0.9, fill=False, hatch="//", edgecolor="grey", linewidth=0))
    labels = []
    for r in state.replicas:
        status = r.role if r.up else "down"
        if r.up and r.paused:
            status += ", paused"
        isr = "in ISR" if r.in_isr else "out of ISR"
        hw = r.high_watermark if r.up else "–"
        labels.append(f"broker {r.broker} ({status}, {isr})\nHW {hw} · LEO {r.log_end}")
    labels.append(f"acknowledged,\nin no log: {len(lost_offsets)}")
    # Row labels as plain texts and a title at a fixed height: matplotlib's tick and title machinery would
    # cost a panel re-run a third of its drawing time.
    ax.set_yticks([])
    for i, label in enumerate(labels):
        ax.text(-0.01, i, label, transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8)
    ax.set_xlim(lo, lo + width)
    ax.set_xlabel("offset")
    ax.set_title(title or f"{state.topic}-{state.partition} at t = {state.time:.3f} s: leader "
                 f"{state.leader if state.leader >= 0 else 'none'}, epoch {state.leader_epoch}, "
                 f"ISR {list(state.isr)}", fontsize=10, y=1.01)
    handles = [Patch(color=EPOCH_COLOURS[e % len(EPOCH_COLOURS)], label=f"epoch {e}") for e in sorted(epochs)]
    handles += [Patch(color=KIND_COLOURS[k], label=KIND_LABELS[k]) for k in KIND_COLOURS if k in kinds]
    handles += [Patch(color=LOST_COLOUR, label="acknowledged, lost"),
                Line2D([], [], color="black", linewidth=2.5, label="high watermark"),
                Line2D([], [], color="black", marker="<", linestyle="", label="log end (LEO)")]
    if any(r.last_stable_offset is not None for r in state.replicas):
        handles.append(Line2D([], [], color="black", linestyle=":", label="last stable offset"))
    if any(len(r.segments) > 1 for r in state.replicas):
        handles.append(Line2D([], [], color="grey", linewidth=0.8, label="segment boundary"))
    if any(r.cleaned_to > r.log_start for r in state.replicas):
        handles.append(Patch(fill=False, hatch="//", edgecolor="grey", label="compacted"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return fig
