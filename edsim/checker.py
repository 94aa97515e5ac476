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
from functools import cached_property
from typing import Callable

import numpy as np
import pandas as pd

from edsim.history import History

__all__ = ["ANOMALIES", "Analysis", "Report", "cases_frame", "check", "detector"]

ANOMALIES = ("lost-write", "unseen", "duplicate", "inconsistent-offsets", "nonmonotonic-send", "poll-skip",
             "nonmonotonic-poll", "G1a", "precommitted-read", "G1c", "duplicate-processing",
             "lost-processing")

_SHOWN = 10     # offsets listed in an evidence sentence before "..."
_KEPT = 100     # skipped offsets kept in a poll-skip case


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
    frame = pd.DataFrame({name: (np.asarray(col) if not isinstance(col, list) else col)
                          for name, col in columns.items()})
    frame["evidence"] = pd.Series(list(evidence), index=frame.index, dtype=object)
    return frame


def _empty_cases() -> pd.DataFrame:
    """The case table of an anomaly that has no detector yet."""
    return cases_frame({"process": [], "topic": [], "partition": np.empty(0, np.int64),
                        "offset": np.empty(0, np.int64), "value": np.empty(0, np.int64),
                        "time": np.empty(0)}, [])


def check(history) -> Report:
    """Checks a :class:`~edsim.history.History` (or its ``to_frame()``) for every anomaly in ANOMALIES."""
    analysis = Analysis.of(history)
    cases = {}
    for name in ANOMALIES:
        fn = DETECTORS.get(name)
        cases[name] = fn(analysis).reset_index(drop=True) if fn else _empty_cases()
    return Report({name: len(frame) for name, frame in cases.items()}, cases)


# ---- numpy helpers -------------------------------------------------------------------------------------
def _pair_codes(a: np.ndarray, b: np.ndarray, na: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Integer codes for the pairs (a, b) that sort like the pairs (a first); 0 <= a < na.

    Returns the codes, their number (codes need not all be used) and, per a, the code of its smallest b
    (-1 for an a that does not occur). When the b's of each a fill their range densely enough, a code is
    an offset into a concatenation of ranges (linear time); otherwise the pairs are ranked by a sort.
    """
    first = np.full(na, -1, np.int64)
    if a.size == 0:
        return np.empty(0, np.int64), 0, first
    lo = np.full(na, np.iinfo(np.int64).max)
    hi = np.full(na, np.iinfo(np.int64).min)
    np.minimum.at(lo, a, b)
    np.maximum.at(hi, a, b)
    present = hi >= lo
    span = np.where(present, hi - np.where(present, lo, 0) + 1, 0)
    total = int(span.sum())
    if total <= 4 * a.size + 4096:
        base = np.cumsum(span) - span
        first[present] = base[present]
        shift = base - np.where(present, lo, 0)
        return shift[a] + b, total, first
    order = np.lexsort((b, a))
    sa, sb = a[order], b[order]
    new = np.empty(a.size, bool)
    new[0] = True
    new[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    sorted_codes = np.cumsum(new) - 1
    codes = np.empty(a.size, np.int64)
    codes[order] = sorted_codes
    starts = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
    first[sa[starts]] = sorted_codes[starts]
    return codes, int(sorted_codes[-1]) + 1, first


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """Stable argsort; radix sort when the keys fit in 16 bits."""
    if keys.size and keys.min() >= 0 and keys.max() < 65536:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    return np.argsort(keys, kind="stable")


def _t(x) -> str:
    """A simulation time for a sentence: seconds, to the microsecond."""
    return f"{float(x):.6f}".rstrip("0").rstrip(".")


def _plural(k: int, word: str) -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


def _offsets_text(offsets) -> str:
    shown = ", ".join(str(int(o)) for o in offsets[:_SHOWN])
    return shown + (", ..." if len(offsets) > _SHOWN else "")


def _value_codes(v: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes for values (equal values, equal codes): the value itself, shifted, when the values
    are dense enough (they are numbered per run), else their rank."""
    if v.size == 0:
        return np.empty(0, np.int64), 0
    lo, hi = int(v.min()), int(v.max())
    if hi - lo < 4 * v.size + 4096:
        return v - lo, hi - lo + 1
    uniq, codes = np.unique(v, return_inverse=True)
    return codes.reshape(-1), uniq.size


@dataclass
class VersionOrder:
    """Per (topic, partition): offset -> values, from ok sends with known offsets and from polls.

    Its entries are history rows (``rows``, ascending) with their ``tp``, ``offset``, ``value``, and
    ``is_poll``. ``slot`` codes (topic-partition, offset) so that the slots of one partition are
    contiguous and ordered by offset; ``rank`` is the global dense rank of an entry's slot, so index
    differences within a partition are rank differences, and an entry's index in its partition is
    ``rank - first_rank[tp]``.
    """

    rows: np.ndarray
    tp: np.ndarray
    offset: np.ndarray
    value: np.ndarray
    is_poll: np.ndarray
    slot: np.ndarray
    rank: np.ndarray
    occupied: np.ndarray      # per slot
    first_rank: np.ndarray    # tp -> rank of its first occupied offset (-1 if none)
    conflicted: np.ndarray    # slots holding more than one value
    duplicated: np.ndarray    # values at more than one slot

    def rank_of(self, rows: np.ndarray) -> np.ndarray:
        """Ranks of history rows that are entries."""
        return self.rank[np.searchsorted(self.rows, rows)]

    @cached_property
    def rank_row(self) -> np.ndarray:
        """rank -> one history row at that offset."""
        slot_row = np.empty(self.occupied.size, np.int64)
        slot_row[self.slot] = self.rows
        return slot_row[self.occupied]


class Analysis:
    """The history as numpy columns, and the structures detectors share (computed when first used).

    Row masks: ``acked`` (ok sends), ``polled`` (polled records), ``reset`` (assign/subscribe that did
    not fail, and crashes), ``applied`` (ok process rows: side effects applied), ``committed`` (ok commits
    with an offset). ``tp_of(rows)`` codes (topic, partition); ``order`` is the version order, ``missing``
    the acknowledged values nobody read, ``poll_pairs`` the successive reads, ``commit_bound`` the group's
    last committed offset per partition.
    """

    def __init__(self, cols: dict[str, np.ndarray], names: dict[str, list[str]]):
        self.cols = cols
        self.names = names
        self.n = len(cols["time"])
        f, type_ = cols["f"], cols["type"]
        ok = type_ == self._code("type", "ok")
        self.time = cols["time"]
        self.process = cols["process"]
        self.value = np.asarray(cols["value"], np.int64)
        self.offset = np.asarray(cols["offset"], np.int64)
        self.acked = (f == self._code("f", "send")) & ok          # acknowledged sends
        self.polled = (f == self._code("f", "poll")) & ok         # records returned by polls
        self.reset = ((f == self._code("f", "assign")) | (f == self._code("f", "subscribe"))) & (
            type_ != self._code("type", "fail")) | (f == self._code("f", "crash"))
        self.applied = (f == self._code("f", "process")) & ok     # side effects applied (consumer groups)
        self.committed = (f == self._code("f", "commit")) & ok & (self.offset >= 0)
        self._topic, self._partition = cols["topic"], cols["partition"]
        self._pw = int(self._partition.max()) + 2 if self.n else 1
        self.ntp = (int(self._topic.max()) + 1) * self._pw if self.n else 0

    @classmethod
    def of(cls, history) -> "Analysis":
        if isinstance(history, pd.DataFrame):
            return cls(*_columns_from_frame(history))
        if isinstance(history, History) or hasattr(history, "columns"):
            return cls(history.columns(), history.names())
        raise TypeError(f"expected a History or its DataFrame, got {type(history).__name__}")

    def _code(self, column: str, name: str) -> int:
        table = self.names[column]
        return table.index(name) if name in table else -2

    def tp_of(self, rows):
        """(topic, partition) codes of history rows: topic * width + partition + 1."""
        return (self._topic[rows] * self._pw + self._partition[rows] + 1).astype(np.int64)

    def group_of(self, rows, tp):
        """(process, topic, partition) codes of history rows."""
        return self.process[rows].astype(np.int64) * max(self.ntp, 1) + tp

    # ---- naming, for evidence ----
    def proc_name(self, code) -> str:
        return self.names["process"][int(code)]

    def topic_of(self, tp) -> np.ndarray:
        return np.asarray(tp) // self._pw

    def partition_of(self, tp) -> np.ndarray:
        return np.asarray(tp) % self._pw - 1

    def topic_names(self, tp) -> list[str]:
        table = self.names["topic"]
        return [table[int(t)] for t in self.topic_of(tp)]

    def tp_name(self, tp) -> str:
        return f"{self.names['topic'][int(tp) // self._pw]}-{int(tp) % self._pw - 1}"

    def row_tp_name(self, row) -> str:
        return self.tp_name(self.tp_of(row))

    def locate(self, rows: np.ndarray) -> dict:
        """The base columns (process, topic, partition, offset, value, time) of history rows."""
        rows = np.asarray(rows, np.int64)
        tp = self.tp_of(rows)
        return {"process": [self.proc_name(p) for p in self.process[rows]],
                "topic": self.topic_names(tp), "partition": self.partition_of(tp),
                "offset": self.offset[rows], "value": self.value[rows], "time": self.time[rows]}

    def how(self, row) -> str:
        """How a history row put a value at an offset, e.g. 'read by consumer-1 at t=2'."""
        verb = "acknowledged to" if self.acked[row] else "read by"
        return f"{verb} {self.proc_name(self.process[row])} at t={_t(self.time[row])}"

    # ---- shared structures ----
    @cached_property
    def order(self) -> VersionOrder:
        rows = np.flatnonzero((self.acked | self.polled) & (self.offset >= 0))
        tp, offset, value, is_poll = self.tp_of(rows), self.offset[rows], self.value[rows], self.polled[rows]
        slot, nslot, first_slot = _pair_codes(tp, offset, self.ntp)
        occupied = np.zeros(nslot, bool)
        occupied[slot] = True
        rank_of_slot = np.cumsum(occupied) - 1
        first_rank = np.where(first_slot >= 0, rank_of_slot[np.maximum(first_slot, 0)] if nslot else -1, -1)
        # one value per slot (the last written wins); any entry that disagrees marks a conflict
        slot_value = np.empty(nslot, np.int64)
        slot_value[slot] = value
        bad = value != slot_value[slot]
        conflicted = np.unique(slot[bad]) if bad.any() else np.empty(0, np.int64)
        # one slot per value, likewise; with one value per slot it is enough to count distinct values
        vid, nv = _value_codes(value)
        seen = np.zeros(nv, bool)
        seen[vid] = True
        duplicated = np.empty(0, np.int64)
        if conflicted.size or np.count_nonzero(seen) != np.count_nonzero(occupied):
            value_slot = np.empty(nv, np.int64)
            value_slot[vid] = slot
            bad = slot != value_slot[vid]
            duplicated = np.unique(value[bad]) if bad.any() else duplicated
        return VersionOrder(rows, tp, offset, value, is_poll, slot, rank_of_slot[slot], occupied, first_rank,
                            conflicted, duplicated)

    @cached_property
    def read_bound(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Jepsen's max-read-index per partition (a global rank; -1 if never polled).

        Returns the bound per tp, and for the polled entries: their rows, tp and first-index rank.
        """
        o = self.order
        p = o.is_poll
        rows, tp, value, rank = o.rows[p], o.tp[p], o.value[p], o.rank[p]
        if o.duplicated.size:
            # a value read at several offsets bounds the partition at its *first* index
            m = np.isin(o.value, o.duplicated)
            first = (pd.DataFrame({"tp": o.tp[m], "value": o.value[m], "rank": o.rank[m]})
                     .groupby(["tp", "value"])["rank"].min())
            pm = np.flatnonzero(np.isin(value, o.duplicated))
            rank = rank.copy()
            rank[pm] = first.reindex(pd.MultiIndex.from_arrays([tp[pm], value[pm]])).to_numpy()
        bound = np.full(self.ntp, -1, np.int64)
        np.maximum.at(bound, tp, rank)
        return bound, rows, tp, rank

    @cached_property
    def missing(self) -> tuple[np.ndarray, np.ndarray]:
        """Acknowledged values no poll ever read, split by Jepsen's rule: (lost rows, unseen rows).

        One ok-send row per value: for lost, the acknowledgement at the highest index; for unseen, the
        last acknowledgement.
        """
        acked = np.flatnonzero(self.acked)
        unread = acked[~np.isin(self.value[acked], self.value[self.polled])]
        if unread.size == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        known = unread[self.offset[unread] >= 0]
        lost_rows = np.empty(0, np.int64)
        if known.size:
            bound = self.read_bound[0]
            tp = self.tp_of(known)
            df = pd.DataFrame({"row": known, "tp": tp, "value": self.value[known],
                               "rank": self.order.rank_of(known)})
            last = df.groupby(["tp", "value"])["rank"].transform("max").to_numpy()
            lost = df[(last <= bound[tp]) & (df["rank"].to_numpy() == last)]
            lost_rows = np.sort(lost.drop_duplicates("value")["row"].to_numpy())
        rest = unread[~np.isin(self.value[unread], self.value[lost_rows])]
        # the last acknowledgement of each value
        _, last_idx = np.unique(self.value[rest][::-1], return_index=True)
        unseen_rows = np.sort(rest[::-1][last_idx])
        return lost_rows, unseen_rows

    @cached_property
    def commit_bound(self) -> tuple[np.ndarray, np.ndarray]:
        """Per tp, the offset of the group's last ``ok`` commit in time (ties: the later history row), and
        that commit's row; (0, -1) for a partition never committed."""
        bound = np.zeros(max(self.ntp, 1), np.int64)
        row = np.full(bound.size, -1, np.int64)
        k = np.flatnonzero(self.committed)
        if k.size:
            tp = self.tp_of(k)
            order = np.lexsort((k, self.time[k], tp))
            t = tp[order]
            last = k[order[np.r_[t[1:] != t[:-1], True]]]
            bound[self.tp_of(last)] = self.offset[last]
            row[self.tp_of(last)] = last
        return bound, row

    @cached_property
    def poll_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Successive polled records of a (process, topic, partition), with no reset of the process in
        between, whose index does not advance by exactly one.

        Returns (earlier rows, later rows, index delta) of those pairs.
        """
        o = self.order
        p = o.is_poll
        rows, rank = o.rows[p], o.rank[p]
        group = self.group_of(rows, o.tp[p])
        by_group = _stable_order(group)
        g, r = group[by_group], rank[by_group]
        pair = np.flatnonzero((g[1:] == g[:-1]) & (r[1:] - r[:-1] != 1))
        i, j = rows[by_group[pair]], rows[by_group[pair + 1]]
        delta = r[pair + 1] - r[pair]
        resets = np.flatnonzero(self.reset)
        if resets.size and i.size:
            # resets before a row, counted over (process, row) keys: a pair keeps the same count exactly
            # when no reset of its process lies between
            width = self.n + 1
            keys = np.sort(self.process[resets].astype(np.int64) * width + resets)
            proc = self.process[i].astype(np.int64) * width
            keep = np.searchsorted(keys, proc + i) == np.searchsorted(keys, proc + j)
            i, j, delta = i[keep], j[keep], delta[keep]
        return i, j, delta


def _columns_from_frame(df: pd.DataFrame):
    """Columns and decoding tables from ``History.to_frame()`` (categorical or plain string columns)."""
    cols, names = {}, {}
    for name in ("process", "topic", "error", "type", "f"):
        s = df[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            codes, cats = s.cat.codes.to_numpy(), s.cat.categories
        else:
            codes, cats = pd.factorize(s.astype(str))
        names[name] = [str(c) for c in cats]
        cols[name] = np.asarray(codes, np.int32)
    for name in ("key", "value", "partition", "offset", "op"):
        cols[name] = df[name].to_numpy(np.int64)
    for name in ("time", "invoke_time"):
        cols[name] = df[name].to_numpy(float)
    return cols, names


# ---- detectors ---------------------------------------------------------------------------------------
@detector("inconsistent-offsets")
def _inconsistent_offsets(a: Analysis) -> pd.DataFrame:
    o = a.order
    m = np.flatnonzero(np.isin(o.slot, o.conflicted)) if o.conflicted.size else np.empty(0, np.int64)
    firsts = (pd.DataFrame({"slot": o.slot[m], "value": o.value[m], "row": o.rows[m]})
              .sort_values(["slot", "row"], kind="stable")
              .drop_duplicates(["slot", "value"]))        # the first row to show each value there
    slots, vals, rws = (firsts[c].to_numpy() for c in ("slot", "value", "row"))
    cuts = np.flatnonzero(np.diff(slots)) + 1
    rows, values, index, evidence = [], [], [], []
    for g_val, r in zip(np.split(vals, cuts), np.split(rws, cuts)):
        if not len(r):
            continue
        tp = a.tp_of(r[0])
        rows.append(r[1])                                  # the row that revealed the conflict
        values.append(tuple(int(v) for v in g_val))
        index.append(int(o.rank_of(r[:1])[0] - o.first_rank[tp]))
        shown = "; ".join(f"{int(v)} ({a.how(x)})" for v, x in zip(g_val, r))
        evidence.append(f"offset {int(a.offset[r[0]])} of {a.tp_name(tp)} holds {len(r)} different values: {shown}")
    cols = a.locate(np.array(rows, np.int64))
    del cols["value"]
    return cases_frame({**cols, "values": values, "index": np.array(index, np.int64)}, evidence)


@detector("duplicate")
def _duplicate(a: Analysis) -> pd.DataFrame:
    o = a.order
    m = np.flatnonzero(np.isin(o.value, o.duplicated)) if o.duplicated.size else np.empty(0, np.int64)
    firsts = (pd.DataFrame({"value": o.value[m], "slot": o.slot[m], "row": o.rows[m]})
              .drop_duplicates(["value", "slot"]))        # the first row to show the value at each place
    sends = {}
    if m.size:                                             # how often the application sent each value
        sent = np.flatnonzero(a.cols["f"] == a._code("f", "send"))
        sends = pd.Series(a.value[sent]).value_counts().to_dict()
    rows, offsets, locations, evidence = [], [], [], []
    for value, g in firsts.groupby("value", sort=True):
        r = np.sort(g["row"].to_numpy())
        rows.append(r[1])                                  # the row that revealed the second place
        offsets.append(tuple(int(a.offset[x]) for x in r))
        locations.append(tuple(f"{a.row_tp_name(x)}@{int(a.offset[x])}" for x in r))
        shown = "; ".join(f"offset {int(a.offset[x])} of {a.row_tp_name(x)} ({a.how(x)})" for x in r)
        k = sends.get(int(value), 0)
        how_sent = "was sent once but" if k <= 1 else f"was sent {k} times (resent) and"
        evidence.append(f"value {int(value)} {how_sent} appears at {len(r)} different offsets: {shown}")
    return cases_frame({**a.locate(np.array(rows, np.int64)),
                        "count": np.array([len(x) for x in offsets], np.int64),
                        "offsets": offsets, "locations": locations}, evidence)


def _missing_frame(a: Analysis, rows: np.ndarray, lost: bool) -> pd.DataFrame:
    """Cases of acknowledged values nobody read, with the partition's furthest read (Jepsen's max-read)."""
    o = a.order
    tp = a.tp_of(rows)
    known = a.offset[rows] >= 0
    rank = np.full(rows.size, -1, np.int64)
    rank[known] = o.rank_of(rows[known])
    if rows.size:
        bound, prow, ptp, prank = a.read_bound
        b = bound[tp]
        hit = np.flatnonzero(prank == bound[ptp])      # polls that read at the bound
        tps, first = np.unique(ptp[hit], return_index=True)
        reader = dict(zip(tps.tolist(), prow[hit[first]].tolist()))
    else:
        b, reader = rank, {}
    read_row = np.array([reader.get(int(t), -1) for t in tp], np.int64)
    read_offset = np.where(b >= 0, a.offset[o.rank_row[np.maximum(b, 0)]] if rows.size and o.rows.size else -1, -1)
    first_rank = o.first_rank[tp]
    evidence = []
    for row, t, k, ro, rr in zip(rows, tp, known, read_offset, read_row):
        v, name, who = int(a.value[row]), a.tp_name(t), a.proc_name(a.process[row])
        if lost:
            evidence.append(
                f"value {v} was acknowledged to {who} at offset {int(a.offset[row])} of {name} (t={_t(a.time[row])}) "
                f"but a poll read offset {int(ro)} of that partition ({a.proc_name(a.process[rr])} at "
                f"t={_t(a.time[rr])}) and no poll ever read value {v}")
        else:
            where = f"at offset {int(a.offset[row])} of {name}" if k else f"to {name} without an offset (acks=0)"
            seen = ("no poll ever read that partition" if rr < 0
                    else f"the furthest any poll read there is offset {int(ro)}")
            evidence.append(f"value {v} was acknowledged to {who} {where} (t={_t(a.time[row])}) but no poll ever "
                            f"read it; {seen}")
    cols = {**a.locate(rows),
            "index": np.where(known, rank - first_rank, -1),
            "max_read_index": np.where(b >= 0, b - first_rank, -1),
            "read_offset": read_offset.astype(np.int64),
            "read_process": [a.proc_name(a.process[r]) if r >= 0 else "" for r in read_row],
            "read_time": np.where(read_row >= 0, a.time[np.maximum(read_row, 0)], np.nan)}
    return cases_frame(cols, evidence)


@detector("lost-write")
def _lost_write(a: Analysis) -> pd.DataFrame:
    return _missing_frame(a, a.missing[0], lost=True)


@detector("unseen")
def _unseen(a: Analysis) -> pd.DataFrame:
    return _missing_frame(a, a.missing[1], lost=False)


@detector("nonmonotonic-send")
def _nonmonotonic_send(a: Analysis) -> pd.DataFrame:
    o = a.order
    s = ~o.is_poll                                         # acknowledged sends with known offsets
    rows, value, off = o.rows[s], o.value[s], o.offset[s]
    group = a.group_of(rows, o.tp[s])
    inv = a.cols["invoke_time"]
    invoke = inv[rows]
    # no invoke time: the completion time; and compare at nanosecond resolution, because the simulation
    # clock reaches one instant by different sums (1.9999999999998908 and 2.0)
    invoke = np.round(np.where(np.isnan(invoke), a.time[rows], invoke), 9)
    # Completions usually come in invoke order within a group already: sort only the groups that do not.
    order = _stable_order(group)
    g, it, v = group[order], invoke[order], value[order]
    same = g[1:] == g[:-1]
    in_order = (it[1:] > it[:-1]) | ((it[1:] == it[:-1]) & (v[1:] >= v[:-1]))
    if not in_order[same].all():
        late = np.unique(g[1:][same & ~in_order])
        sub = np.flatnonzero(np.isin(g, late))
        order[sub] = order[sub][np.lexsort((v[sub], it[sub], g[sub]))]
    g, of = group[order], off[order]
    bad = np.flatnonzero((g[1:] == g[:-1]) & (of[1:] <= of[:-1]))
    i, j = rows[order[bad]], rows[order[bad + 1]]
    evidence = []
    for x, y in zip(i, j):
        o1, o2, v1, v2 = int(a.offset[x]), int(a.offset[y]), int(a.value[x]), int(a.value[y])
        where = (f"both were written at offset {o1}" if o1 == o2
                 else f"{v1} was written at offset {o1} and {v2} at offset {o2}")
        evidence.append(f"{a.proc_name(a.process[y])} sent value {v1} (t={_t(inv[x])}) before value {v2} "
                        f"(t={_t(inv[y])}) to {a.row_tp_name(y)}, but {where}")
    cols = {**a.locate(j), "invoke_time": inv[j], "prev_offset": a.offset[i], "prev_value": a.value[i],
            "prev_invoke_time": inv[i]}
    return cases_frame(cols, evidence)


def _poll_frame(a: Analysis, skip: bool) -> pd.DataFrame:
    i, j, delta = a.poll_pairs
    sel = np.flatnonzero(delta > 1 if skip else delta < 1)
    pi, pj, delta = i[sel], j[sel], delta[sel]
    ri, rj = a.order.rank_of(pi), a.order.rank_of(pj)
    o = a.order
    same_poll = a.cols["op"][pi] == a.cols["op"][pj]
    evidence, skipped = [], []
    for x, y, d, r1, r2, sp in zip(pi, pj, delta, ri, rj, same_poll):
        who, name = a.proc_name(a.process[y]), a.row_tp_name(y)
        o1, o2, v1, v2 = int(a.offset[x]), int(a.offset[y]), int(a.value[x]), int(a.value[y])
        first = f"{who} read offset {o1} (value {v1}) of {name} (t={_t(a.time[x])})"
        when = "in the same poll" if sp else f"in a later poll (t={_t(a.time[y])})"
        if skip:
            gap = a.offset[o.rank_row[r1 + 1:r2]]
            skipped.append(tuple(int(g) for g in gap[:_KEPT]))
            evidence.append(f"{first} and next offset {o2} (value {v2}) {when}, skipping "
                            f"{_plural(int(d) - 1, 'record')} known to be at offset {_offsets_text(gap)}")
        elif d == 0:
            evidence.append(f"{first} and the same offset again {when}, with no assign, subscribe or crash in between")
        else:
            evidence.append(f"{first} and next offset {o2} (value {v2}) {when}, going back "
                            f"{_plural(int(-d), 'record')} with no assign, subscribe or crash in between")
    cols = {**a.locate(pj), "prev_offset": a.offset[pi], "prev_value": a.value[pi], "prev_time": a.time[pi],
            "delta": delta, "same_poll": same_poll}
    if skip:
        cols["skipped"] = delta - 1
        cols["skipped_offsets"] = skipped
    return cases_frame(cols, evidence)


@detector("poll-skip")
def _poll_skip(a: Analysis) -> pd.DataFrame:
    return _poll_frame(a, skip=True)


@detector("nonmonotonic-poll")
def _nonmonotonic_poll(a: Analysis) -> pd.DataFrame:
    return _poll_frame(a, skip=False)


# ---- consumer groups: edsim's own anomalies ------------------------------------------------------------
def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@detector("duplicate-processing")
def _duplicate_processing(a: Analysis) -> pd.DataFrame:
    rows = np.flatnonzero(a.applied)
    vid, nv = _value_codes(a.value[rows])
    twice = rows[np.bincount(vid, minlength=nv)[vid] > 1]
    twice = twice[np.lexsort((twice, a.time[twice], a.value[twice]))]   # by value, then in time order
    v = a.value[twice]
    groups = np.split(twice, np.flatnonzero(v[1:] != v[:-1]) + 1) if twice.size else []
    second, processes, times, evidence = [], [], [], []
    for g in groups:
        second.append(g[1])                                # the row that applied it a second time
        processes.append(tuple(a.proc_name(a.process[x]) for x in g))
        times.append(tuple(float(a.time[x]) for x in g))
        places = {(a.row_tp_name(x), int(a.offset[x])) for x in g}
        one_place = len(places) == 1
        shown = [f"by {a.proc_name(a.process[x])} at t={_t(a.time[x])}"
                 + ("" if one_place else f" ({a.row_tp_name(x)} offset {int(a.offset[x])})") for x in g[:_SHOWN]]
        if len(g) > _SHOWN:
            shown.append(f"{len(g) - _SHOWN} more times")
        where = f" ({a.row_tp_name(g[0])} offset {int(a.offset[g[0]])})" if one_place else ""
        evidence.append(f"value {int(a.value[g[0]])}{where} was processed {len(g)} times: {_and_list(shown)}")
    return cases_frame({**a.locate(np.array(second, np.int64)),
                        "count": np.array([len(g) for g in groups], np.int64),
                        "processes": processes, "times": times}, evidence)


@detector("lost-processing")
def _lost_processing(a: Analysis) -> pd.DataFrame:
    o = a.order
    bound, commit_row = a.commit_bound
    if a.applied.any():
        below = np.flatnonzero(o.offset < bound[o.tp])
        below = below[~np.isin(o.value[below], a.value[a.applied])]
        _, first = np.unique(o.value[below], return_index=True)
        entries = np.sort(below[first])                    # each value once: its first entry below a commit
    else:                                                  # no consumer processes anything: nothing to judge
        entries = np.empty(0, np.int64)
    rows, tp = o.rows[entries], o.tp[entries]
    crow = commit_row[tp]
    evidence = [f"value {int(a.value[r])} at offset {int(a.offset[r])} of {a.tp_name(t)} is below the committed "
                f"offset {int(a.offset[c])} (committed by {a.proc_name(a.process[c])} at t={_t(a.time[c])}) "
                f"but no consumer ever processed it" for r, t, c in zip(rows, tp, crow)]
    return cases_frame({**a.locate(rows), "committed_offset": a.offset[crow],
                        "commit_process": [a.proc_name(a.process[c]) for c in crow],
                        "commit_time": a.time[crow]}, evidence)
