"""Anomalies in a history, after Jepsen's Kafka checker.

The definitions follow jepsen-io/jepsen, ``jepsen/src/jepsen/tests/kafka.clj`` (``version-orders``,
``lost-write-cases``, ``unseen``, ``duplicate-cases``, ``nonmonotonic-send-cases``,
``poll-skip+nonmonotonic-cases``). The checker reads only the history (what clients asked and were told),
never what the brokers hold.

Version order
    For every (topic, partition): offset -> the set of values seen there, from acknowledged sends (``ok``
    with a known offset) and from every polled record. A partition's *index* is the dense rank of an
    occupied offset: offsets no record occupies (transaction markers, aborted records nobody saw) are not
    in the order.

inconsistent-offsets
    One (topic, partition, offset) holding more than one distinct value. One case per offset.
duplicate
    One value at more than one distinct (topic, partition, offset). One case per value.
lost-write
    Jepsen's rule. For each partition take the values polled there, and of each its *first* index in the
    partition; the largest of these is the bound (Jepsen's ``max-read-index``). A value acknowledged at an
    offset whose *last* index in the partition is <= the bound, and which no poll ever read, is lost: a
    poll read past it, so it should have been seen. One case per value.
unseen
    An acknowledged value (``ok`` send, offset known or not) that no poll ever read and that is not a
    lost-write. Every acknowledged value that nobody read is exactly one of the two. An ``acks=0`` send
    (``ok`` with offset -1) has no index, so it can only be unseen; ``info`` and ``fail`` sends are never
    expected to be read. One case per value.
nonmonotonic-send
    Per (process, topic, partition), the acknowledged sends with known offsets in the order the
    application sent them, (invoke_time, value), invoke times taken to the nanosecond: an offset not
    greater than the previous one. One case per such pair.
poll-skip, nonmonotonic-poll
    Per (process, topic, partition), successive polled records (``ok`` poll rows with an offset) in
    history order, each mapped to its index. Next index > previous + 1 is a poll-skip; next index <=
    previous is a nonmonotonic-poll (going back, or reading the same offset again). An ``assign`` or
    ``subscribe`` row (not ``fail``) or a ``crash`` row of the process between the two resets the
    comparison. One case per such pair; ``skipped_offsets`` keeps the first 100 offsets skipped.

Consumer groups: edsim's own anomalies
    Jepsen has no name for these; they are edsim's definitions, in Jepsen's style, for the book's
    chapter 12 ("the duplicates problem"). They read ``process`` rows (``ok``: a consumer applied the side
    effect of one record) and ``commit`` rows (one per partition; ``offset`` is the next offset to consume).
    A history without any ``process`` row (a producer-only scenario, or consumers that only poll) reports
    neither.
duplicate-processing
    A value whose side effect was applied more than once: two or more ``ok`` ``process`` rows with that
    value, by the same consumer or by different ones. Polling a record twice is not processing it twice.
    One case per value.
lost-processing
    A record the group committed past but never processed. Per (topic, partition), C is the offset of the
    *last* ``ok`` commit row in time (ties: the later history row), whoever committed it: a run has one
    group, and a later commit may move C back. ``fail`` and ``info`` commits do not count; a partition
    never committed has no C. Every value the version order places at an offset < C that has no
    ``process`` row at all (at any offset, by anyone) is lost. A value at several offsets is judged at
    each, and reported once. The catch-up reader's polls are part of the version order, so a record no
    group member ever polled is still judged.

Transactions (Jepsen's names)
    The model records a transaction's sends when it ends: ``ok`` with offsets if it committed, ``fail`` with
    the offsets they took if it aborted (``info`` if the producer crashed first); the ``txn`` column ties
    sends, the polls made inside the transaction, and its ``txn`` row together.
G1a
    kafka.clj ``g1a-cases``: an ``ok`` poll read a write of an aborted transaction: the same value at the
    (topic, partition, offset) of a ``fail`` send, or a value only ever sent in aborted transactions (a late
    write that landed after its transaction ended). Such polls are not places in the version order, so a
    read_committed reader that skipped them shows no poll-skip. One case per such poll row.
precommitted-read
    kafka.clj ``precommitted-read-cases``: a transaction polled a value it sent itself (in Kafka's model a
    sent value is invisible to every poller until its transaction commits). One case per transaction.
G1c
    Cyclic information flow (Adya; Elle in Jepsen) over write-read edges: T1 -> T2 when committed transaction
    T2 polled a value committed transaction T1 sent. edsim builds wr edges only (Kafka's ww order per
    partition adds none that a workload here can close). One case per cycle (strongly connected component).

Where we differ from Jepsen, and why
    * Rows, not operations. Jepsen compares the last value of one operation with the first of the next,
      and reports pairs inside one operation separately (``int-poll-skip``, ``int-nonmonotonic-poll``,
      ``int-nonmonotonic-send``). Our history has one row per record and a Kafka consumer's position
      moves the same way inside a poll as between polls, so poll-skip and nonmonotonic-poll compare
      every successive pair of records; the ``same_poll`` column tells the two kinds apart.
    * Offsets, not values, are mapped to indices for poll-skip / nonmonotonic-poll. Jepsen's ``by-value``
      keeps one value per offset and one index per value, which blurs when a value is duplicated; the
      offset a record was polled at is what the consumer's position actually followed.
    * Send order is invoke order. Jepsen's client is synchronous, so a process's completions come in the
      order it sent. Our producer is asynchronous: batches complete (and are retried) out of order, and
      the order the application meant is the order of its ``send()`` calls, so we sort by
      (invoke_time, value). Offsets are compared directly (they order like indices). Sends are not reset
      by assign/subscribe, which concern consumers.
    * Resets. Jepsen keeps a process's last reads across assign/subscribe for the partitions still
      assigned, and a crashed Jepsen client comes back under a new process id. Our clients keep their
      names across crashes, and after a rebalance a consumer legitimately restarts from the committed
      offset, so an assign, subscribe or crash row resets every comparison of that process.
    * unseen excludes lost-write. Jepsen's unseen counts every acknowledged value no poll read, lost
      ones included; here the two are disjoint so that counts add up in a table.
    * A value counts as read if any poll returned it, in any partition. Jepsen's values are unique per
      key, ours per run; a value read in another partition than the one it was acknowledged in is then a
      duplicate, not a lost write. For the same reason duplicate looks across partitions, not per key.
    * Only ``ok`` sends feed the version order. Jepsen also uses ``info`` transactions that must have
      committed (some of their writes were read); our ``info`` and ``fail`` sends carry no offset, and
      their values enter the order only through polls. For the same reason the sends of an aborted
      transaction must not be recorded ``ok`` with an offset (Jepsen's aborted txn op is ``fail``):
      they would enter the order and make read_committed consumers look as if they skipped them.

Case tables
    Every frame has ``process, topic, partition, offset, value, time`` (the row that shows the anomaly:
    the acknowledgement for lost-write / unseen, the second send or read for the pair anomalies, the
    first row that showed a second value / a second place for inconsistent-offsets / duplicate) and
    ``evidence``, plus: lost-write and unseen ``index, max_read_index, read_offset, read_process,
    read_time`` (the partition's furthest read, Jepsen's ``max-read``); inconsistent-offsets ``values``
    (instead of ``value``) and ``index``; duplicate ``count, offsets, locations`` (places in the order
    first seen); nonmonotonic-send ``invoke_time, prev_offset, prev_value, prev_invoke_time``; poll-skip
    and nonmonotonic-poll ``prev_offset, prev_value, prev_time, delta`` (index difference, Jepsen's
    ``:delta``), ``same_poll``, and for poll-skip ``skipped, skipped_offsets``; duplicate-processing
    (located at the second application) ``count, processes, times`` (every application, in time order);
    lost-processing (located at the first row that put the value below C: its acknowledgement or a poll)
    ``committed_offset, commit_process, commit_time`` (the commit that set C).

Adding a detector is one function::

    @detector("G1a")
    def _g1a(a: Analysis) -> pandas.DataFrame: ...

It returns one row per case (built with :func:`cases_frame`), with an ``evidence`` sentence each;
:class:`Analysis` holds the columns and the shared, lazily computed structures (``order``, ``missing``).
Names in :data:`ANOMALIES` without a detector report 0 and an empty frame.

Everything on the clean path is vectorised; Python loops run only over the cases found.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd


__all__ = ["ANOMALIES", "Analysis", "Report", "cases_frame", "check", "detector"]

ANOMALIES = ("lost-write", "unseen", "duplicate", "inconsistent-offsets", "nonmonotonic-send", "poll-skip",
             "nonmonotonic-poll", "G1a", "precommitted-read", "G1c", "duplicate-processing",
             "lost-processing")



@dataclass
class Report:
    """What :func:`check` found: a count per anomaly and one row per case."""

    anomalies: dict[str, int]
    cases: dict[str, pd.DataFrame]

    @property
    def valid(self) -> bool:
        """True when no anomaly was found."""
        return not any(self.anomalies.values())

    def __repr__(self):
        found = {k: v for k, v in self.anomalies.items() if v}
        return f"Report({found or 'no anomalies'})"


# ---- detector registry ---------------------------------------------------------------------------------
DETECTORS: dict[str, Callable[["Analysis"], pd.DataFrame]] = {}


def detector(name: str):
    """Registers ``fn(analysis) -> DataFrame of cases`` as the detector of anomaly ``name``."""
    if name not in ANOMALIES:
        raise ValueError(f"unknown anomaly {name!r}; expected one of {ANOMALIES}")

    def register(fn):
        DETECTORS[name] = fn
        return fn

    return register


def cases_frame(columns: dict, evidence) -> pd.DataFrame:
    """A case table: the locating columns in order, then ``evidence``."""
    columns = {name: (np.asarray(col) if not isinstance(col, list) else col) for name, col in columns.items()}
    evidence = list(evidence)
    if not evidence and not any(len(col) for col in columns.values()):
        # most runs find nothing: an empty table of each shape is built once (pandas' constructor is the
        # checker's largest fixed cost) and copied
        shape = tuple((name, "O" if isinstance(col, list) else col.dtype.str) for name, col in columns.items())
        empty = _EMPTY.get(shape)
        if empty is None:
            empty = _EMPTY[shape] = _build_cases(columns, evidence)
        return empty.copy()
    return _build_cases(columns, evidence)


_EMPTY: dict[tuple, pd.DataFrame] = {}


def _build_cases(columns: dict, evidence: list) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    frame["evidence"] = pd.Series(evidence, index=frame.index, dtype=object)
    return frame


def _empty_cases() -> pd.DataFrame:
    """The case table of an anomaly that has no detector yet."""
    return cases_frame({"process": [], "topic": [], "partition": np.empty(0, np.int64),
                        "offset": np.empty(0, np.int64), "value": np.empty(0, np.int64),
                        "time": np.empty(0)}, [])


def _numbered(frame: pd.DataFrame) -> pd.DataFrame:
    """The cases numbered 0, 1, 2... (a detector may have filtered or sorted them)."""
    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return frame
    return frame.reset_index(drop=True)


def check(history, invariants=()) -> Report:
    """Checks a :class:`~edsim.history.History` (or its ``to_frame()``) for every anomaly in ANOMALIES, then each
    declared invariant (``edsim.invariants``), reported under its own name."""
    analysis = Analysis.of(history)
    cases = {}
    for name in ANOMALIES:
        fn = DETECTORS.get(name)
        cases[name] = _numbered(fn(analysis)) if fn else _empty_cases()
    if invariants:
        frame = history.to_frame() if hasattr(history, "to_frame") else history
        lineage = history.lineage() if hasattr(history, "lineage") else None
        for invariant in invariants:
            cases[invariant.name] = _numbered(invariant.cases(frame, lineage))
    return Report({name: len(frame) for name, frame in cases.items()}, cases)



from .analysis import Analysis  # noqa: E402  (detectors register themselves on import)
from . import detectors  # noqa: E402,F401
