"""What every detector shares: the history as numpy columns, the version order of each partition, and
small numpy helpers. Built once per check, each piece on first use."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from edsim.history import History

_SHOWN = 10     # offsets listed in an evidence sentence before "..."
_KEPT = 100     # skipped offsets kept in a poll-skip case

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
        # each row's consumer group (code into names["group"]; 0 = none): processing is judged per group
        self.group = cols["group"] if "group" in cols else np.zeros(self.n, np.int32)
        self.names.setdefault("group", [""])
        self.txn = cols["txn"] if "txn" in cols else np.full(self.n, -1, np.int64)
        # writes of aborted transactions: ``fail`` sends that carry the offset they took
        self.aborted_write = (f == self._code("f", "send")) & (type_ == self._code("type", "fail")) & (
            self.offset >= 0)
        self.committed = (f == self._code("f", "commit")) & ok & (self.offset >= 0)
        self._topic, self._partition = cols["topic"], cols["partition"]
        self._pw = int(self._partition.max()) + 2 if self.n else 1
        self.ntp = (int(self._topic.max()) + 1) * self._pw if self.n else 0
        # every row's (topic, partition) code, computed once: detectors ask for it many times
        self._tp = self._topic.astype(np.int64) * self._pw + self._partition + 1
        # polls of an aborted write (read_uncommitted) are G1a cases, not places in the version order
        self.aborted_read = self._reads_of(np.flatnonzero(self.aborted_write))
        # ... and so are polls of a value only ever sent in aborted transactions, wherever it was read (a
        # write that landed after its transaction's marker, Jepsen's by-value rule)
        txn_failed = (f == self._code("f", "txn")) & (type_ == self._code("type", "fail"))
        if txn_failed.any():
            sends = f == self._code("f", "send")
            in_aborted = sends & np.isin(self.txn, self.txn[txn_failed]) & (self.txn >= 0)
            only_aborted = np.setdiff1d(self.value[in_aborted], self.value[sends & ~in_aborted])
            self.aborted_read |= self.polled & np.isin(self.value, only_aborted)
            self.aborted_write |= in_aborted & np.isin(self.value, only_aborted)
        self.polled &= ~self.aborted_read

    def _reads_of(self, writes: np.ndarray) -> np.ndarray:
        """Mask of ok polls that read one of ``writes`` (rows): the same value at the same topic-partition and
        offset."""
        out = np.zeros(self.n, bool)
        if not writes.size:
            return out
        polls = np.flatnonzero(self.polled)
        key = lambda rows: (self.tp_of(rows) << 40) | self.offset[rows]   # noqa: E731
        candidates = polls[np.isin(key(polls), key(writes))]
        if candidates.size:
            written = set(zip(key(writes).tolist(), self.value[writes].tolist()))
            hit = [(k, v) in written for k, v in zip(key(candidates).tolist(), self.value[candidates].tolist())]
            out[candidates[np.array(hit, bool)]] = True
        return out

    @classmethod
    def of(cls, history) -> "Analysis":
        if isinstance(history, pd.DataFrame):
            return cls(*_columns_from_frame(history))
        if isinstance(history, History) or hasattr(history, "columns"):
            cols, names = dict(history.columns()), history.names()
            roles = history.roles() if hasattr(history, "roles") else {}
            groups = list(dict.fromkeys([""] + [roles.get(p, ("", ""))[0] for p in names["process"]]))
            per_process = np.array([groups.index(roles.get(p, ("", ""))[0]) for p in names["process"]] or [0],
                                   np.int32)
            cols["group"] = per_process[cols["process"]] if len(cols["process"]) else np.zeros(0, np.int32)
            return cls(cols, {**names, "group": groups})
        raise TypeError(f"expected a History or its DataFrame, got {type(history).__name__}")

    def _code(self, column: str, name: str) -> int:
        table = self.names[column]
        return table.index(name) if name in table else -2

    def tp_of(self, rows):
        """(topic, partition) codes of history rows: topic * width + partition + 1."""
        return self._tp[rows]

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
    def cleaned(self) -> np.ndarray:
        """Values a log cleaner removed (compaction or retention; cleaner.py records them): gone by design, so
        neither unseen nor lost, and a read that steps over them skips nothing."""
        f = self.cols["f"]
        rows = (f == self._code("f", "compact")) | (f == self._code("f", "retention"))
        return np.unique(self.value[rows])

    @cached_property
    def missing(self) -> tuple[np.ndarray, np.ndarray]:
        """Acknowledged values no poll ever read, split by Jepsen's rule: (lost rows, unseen rows).

        One ok-send row per value: for lost, the acknowledgement at the highest index; for unseen, the
        last acknowledgement.
        """
        acked = np.flatnonzero(self.acked)
        unread = acked[~np.isin(self.value[acked], self.value[self.polled])]
        if self.cleaned.size:
            unread = unread[~np.isin(self.value[unread], self.cleaned)]
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
        """Per tp, the offset of the last ``ok`` commit in time (ties: the later history row), and that commit's
        row; (0, -1) for a partition never committed."""
        return self.commit_bound_of(self.committed)

    def commit_bound_of(self, committed) -> tuple[np.ndarray, np.ndarray]:
        """``commit_bound`` over the commit rows ``committed`` (a mask): one consumer group's."""
        bound = np.zeros(max(self.ntp, 1), np.int64)
        row = np.full(bound.size, -1, np.int64)
        k = np.flatnonzero(committed)
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
    cols["txn"] = df["txn"].to_numpy(np.int64) if "txn" in df else np.full(len(df), -1, np.int64)
    if "group" in df:
        codes, cats = pd.factorize(df["group"].astype(str))
        cats = [str(c) for c in cats]
        if "" not in cats:
            cats, codes = cats + [""], codes
        names["group"], cols["group"] = cats, np.asarray(codes, np.int32)
    for name in ("time", "invoke_time"):
        cols[name] = df[name].to_numpy(float)
    return cols, names


# ---- detectors ---------------------------------------------------------------------------------------
