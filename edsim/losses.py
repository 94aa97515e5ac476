"""What a run lost or left undone, from the history and broker truth (``Result.losses()``).

Jepsen's anomaly names judge what clients saw: a record a consumer read before an unclean election truncated it
is ``inconsistent-offsets``, not ``lost-write``, so ``lost-write 0`` does not mean nothing was lost. This table
says it plainly, whatever the checker calls it:

- **absent from the final log**: acknowledged records that no replica holds at the end (truncated by an unclean
  election, or an acks=0/1 write that never reached a surviving replica);
- **unreadable**: acknowledged records that only replicas on brokers that are down hold: not lost (the broker
  may return) but nobody can read them now;
- **never processed**: per consumer group that processes records, the acknowledged records of the topics it
  subscribed to that none of its members processed (a pipeline's input whose output the final read saw was
  processed, even if its member crashed before it heard its transaction commit). After every fault healed, a
  group that stalled shows here, so a stall is never a clean result;
- **not caught up**: the partitions the final catch-up read could not read to their end, and why.

An empty table means none of these happened.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .truth import snapshot

COLUMNS = ["what", "group", "topic", "partition", "records", "why"]


def acknowledged(h: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per topic, the values of the records some send had acknowledged (``send`` rows of type ok), but for those
    a log cleaner removed (compaction, retention: gone by the topic's own rules, not lost)."""
    ok = h[(h["f"] == "send") & (h["type"] == "ok")]
    cleaned = h[h["f"].isin(["compact", "retention"])]["value"].to_numpy()
    return {str(t): np.setdiff1d(g["value"].to_numpy(), cleaned) for t, g in ok.groupby("topic", observed=True)}


def log_rows(kafka, acked: dict) -> list[dict]:
    """Acknowledged records absent from every replica's log, and those only down brokers hold."""
    rows = []
    for topic, values in acked.items():
        if topic not in kafka.topics or not len(values):
            continue
        up, down, down_brokers = [], [], {}
        for tp in kafka.partitions(topic):
            for r in snapshot(kafka, *tp).replicas:
                (up if r.up else down).append(r.values)
                if not r.up and len(r.values):
                    down_brokers.setdefault(r.broker, []).append(tp[1])
        readable = np.concatenate(up) if up else np.empty(0, np.int64)
        held_down = np.concatenate(down) if down else np.empty(0, np.int64)
        absent = values[~np.isin(values, readable) & ~np.isin(values, held_down)]
        unreadable = values[~np.isin(values, readable) & np.isin(values, held_down)]
        if len(absent):
            rows.append({"what": "acknowledged, absent from the final log", "topic": topic,
                         "records": int(len(absent)),
                         "why": "no replica holds them: truncated after an unclean election, or acknowledged by "
                                "a leader that lost them before any surviving replica copied them"})
        if len(unreadable):
            brokers = ", ".join(str(b) for b in sorted(down_brokers))
            rows.append({"what": "acknowledged, unreadable (not lost)", "topic": topic,
                         "records": int(len(unreadable)),
                         "why": f"only replicas on brokers that are down hold them (broker {brokers}); they "
                                "come back if the broker does"})
    return rows


def durable_outputs(h: pd.DataFrame, values, roles: dict, groups) -> dict[str, np.ndarray]:
    """Per group, the inputs whose output one of its services derived and the final catch-up read: processed for
    good even without a ``process`` row, as when a member crashed after asking to commit its transaction and the
    coordinator completed the commit (the member never heard; its transaction's outcome is unknown)."""
    read = h.loc[(h["f"] == "poll") & (h["process"] == "catch-up"), "value"].to_numpy()
    out = {}
    for group in groups:
        pairs = [pair for service in sorted({s for g, s in roles.values() if g == group})
                 for pair in values.derived_by(service).items()]          # (input, its output)
        inputs, outputs = (np.asarray(column, np.int64) for column in zip(*pairs)) if pairs else \
            (np.empty(0, np.int64), np.empty(0, np.int64))
        out[group] = inputs[np.isin(outputs, read)]
    return out


def processing_rows(h: pd.DataFrame, acked: dict, groups: dict[str, set], outputs: dict | None = None) -> list[dict]:
    """Per consumer group that processes records (``groups``: group -> topics it subscribed to), the acknowledged
    records of those topics none of its members processed (``outputs``: per group, inputs whose durable output
    shows they were, ``durable_outputs``)."""
    rows = []
    processed = h[h["f"] == "process"]
    for group, topics in sorted(groups.items()):
        done = processed[processed["group"] == group]["value"].to_numpy()
        if outputs and group in outputs:
            done = np.concatenate([done, outputs[group]])
        for topic in sorted(topics):
            values = acked.get(topic)
            if values is None or not len(values):
                continue
            missing = int((~np.isin(values, done)).sum())
            if missing:
                rows.append({"what": "never processed", "group": group, "topic": topic, "records": missing,
                             "why": f"{missing} of the {len(values)} acknowledged records of {topic} were never "
                                    f"processed by any member of {group}"})
    return rows


def catch_up_rows(gaps: list[tuple]) -> list[dict]:
    return [{"what": "not caught up", "topic": topic, "partition": partition, "why": why}
            for topic, partition, why in gaps]


def catch_up_gaps(run) -> list[tuple]:
    """(topic, partition, why) for each partition the final catch-up did not read to its end: those offline
    for good (it does not wait for them), and, when it ran out of time (``CATCH_UP_LIMIT``, or once open transactions timed out), those it had not
    read to their end. Empty when it read everything (or there was no catch-up)."""
    reader = getattr(run, "reader", None)
    if reader is None:
        return []
    kafka = run.cluster.kafka
    short = getattr(run, "caught_up", None) is False
    gaps = []
    for tp in reader.assignment:
        state = kafka.controller.partitions[tp]
        position, end = reader.position(tp) or 0, reader.end_offset(tp)
        if state.leader < 0 and (short or run.offline_for_good(tp)):
            # (a partition left without a leader after the reader read it to its end is not a gap)
            eligible = kafka.controller.could_lead(state)
            down = [str(b) for b in eligible if not kafka.brokers[b].up]
            who = "in-sync replicas" if state.isr else "eligible replicas"
            if down:
                why = f"offline: no leader ({who} down: broker {', '.join(down)})"
            else:
                why = (f"offline: no leader yet ({who} {', '.join(map(str, eligible)) or 'none'} up, but not yet "
                       "unfenced by the controller when the catch-up time limit passed)")
            gaps.append((tp[0], tp[1], why))
        elif short and end is None:
            gaps.append((tp[0], tp[1], f"its leader (broker {state.leader}) never answered a fetch in time"))
        elif short and position < end:
            gaps.append((tp[0], tp[1], f"read to offset {position} of {end} before the catch-up time limit"))
        elif short and position < reader.high_watermarks.get(tp, 0):
            gaps.append((tp[0], tp[1], f"an open transaction held the last stable offset at {end}, below the high "
                                       f"watermark {reader.high_watermarks[tp]}, until the catch-up time limit"))
    return gaps


def losses(h: pd.DataFrame, kafka, groups: dict[str, set], gaps: list[tuple], outputs: dict | None = None) \
        -> pd.DataFrame:
    """The table ``Result.losses()`` returns: one row per loss or gap (columns ``COLUMNS``); empty if none."""
    acked = acknowledged(h)
    rows = log_rows(kafka, acked) + processing_rows(h, acked, groups, outputs) + catch_up_rows(gaps)
    frame = pd.DataFrame([{"group": "", "partition": None, "records": None, **r} for r in rows], columns=COLUMNS)
    frame["partition"] = frame["partition"].astype("Int64")
    frame["records"] = frame["records"].astype("Int64")
    return frame


def processing_services(run) -> set:
    """The services whose members process records: the built-in Consume and Pipeline."""
    from .apps import Consume, Pipeline
    return {name for name, s in run.cluster.services.items() if issubclass(s.spec.cls, (Consume, Pipeline))}


def processing_groups(h: pd.DataFrame, roles: dict, services: set) -> dict[str, set]:
    """group -> topics it subscribed to, for the groups that process records: those whose members wrote
    ``process`` rows, and those of ``services`` (which would) even if none did."""
    judged = set(h.loc[h["f"] == "process", "group"].astype(str)) - {""}
    judged |= {g for _p, (g, s) in roles.items() if s in services and g}
    subs = h[h["f"] == "subscribe"]
    groups: dict[str, set] = {}
    for process, topic in zip(subs["process"].astype(str), subs["topic"].astype(str)):
        group = roles.get(process, ("", ""))[0]
        if group in judged and topic:
            groups.setdefault(group, set()).update(topic.split(","))
    return groups
