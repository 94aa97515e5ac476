"""The Jepsen-style history of a run: what every client asked for and what it was told.

Rows follow jepsen-io/history: ``index, time, process, type, f, key, value, partition, offset, error``, with
``type`` one of ``invoke | ok | fail | info`` and ``f`` one of ``send | poll | commit | txn | assign | subscribe |
crash | fault | process``. Completed sends carry their invoke time in ``invoke_time`` instead of a separate invoke
row. A poll that returns many records is one *operation* (``op``) spread over one row per record, so that every
row holds one value.

Consumer groups add two kinds of rows (the checker's ``duplicate-processing`` and ``lost-processing`` read them):

``process``
    ``type`` ok: the application applied the side effect of one record. ``process`` is the consumer,
    ``topic, partition, offset, key, value`` are the record's, ``time`` is when the effect was applied. One
    row per record; the records processed together are one op (:meth:`History.processed`).
``commit``
    An offset commit, one row per partition: ``offset`` is the committed offset, i.e. the *next* offset to
    consume (Kafka's convention); ``type`` ok (the group coordinator acknowledged it), fail (definitely not
    committed, ``error`` e.g. ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS) or info (outcome
    unknown, e.g. a timeout); ``time`` is when the outcome was known. The partitions of one commit request are
    one op (:meth:`History.commits`; :meth:`History.event` writes a single one).

Transactions add a ``txn`` column and a kind of row:

``txn``
    One row when a transaction ends: ``type`` ok (committed), fail (aborted) or info (the producer crashed
    before it knew); ``value`` the number of records it sent, ``invoke_time`` when it began, ``detail`` a
    sentence. Its ``op`` is the transaction's id; the ``txn`` column of its sends, and of the polls the
    application made while it was open, holds the same id (-1 outside any transaction). The sends themselves
    are recorded when the transaction ends: ok with offsets if it committed, fail with the offsets they took
    (error TRANSACTION_ABORTED) if it aborted, info without offsets if unknown.

Services add three kinds of rows (``ctx.record``), read by declared invariants:

``state``
    A store changed: ``topic`` the store's name, ``key`` and ``value`` (the new value when it is a whole
    number; a deletion is ``type`` fail).
``view``
    A view served a read: ``key``, ``value`` the answer.
``effect``
    A side effect outside Kafka (an e-mail, a payment), recorded every time it runs.

``group`` and ``service`` name the consumer group and the service of the process that wrote a row (empty for
neither): two services reading one topic are two groups, and the checker judges processing per group.
Values are unique per run; ``History.values`` hands them out and remembers which value each derived value came
from (``lineage()``).

The recorder is columnar: clients hand it whole batches (numpy arrays), and the history becomes a pandas
DataFrame once, at the end. It knows nothing of the model: clients call it through ``World.history``.
"""
from __future__ import annotations

import numpy as np

from .values import Values

TYPES = ("invoke", "ok", "fail", "info")
# New functions go at the end: the codes of the existing ones must not change.
FUNCTIONS = ("send", "poll", "commit", "txn", "assign", "subscribe", "crash", "fault", "process", "state", "view",
             "effect", "compact", "retention")
COLUMNS = ("index", "time", "process", "type", "f", "topic", "key", "value", "partition", "offset",
           "error", "invoke_time", "op", "txn", "group", "service", "detail")

_TYPE = {t: i for i, t in enumerate(TYPES)}
_F = {f: i for i, f in enumerate(FUNCTIONS)}


class _Codes:
    """Interns strings (process names, topics, errors) as small integers."""

    def __init__(self, first=()):
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        for name in first:
            self.code(name)

    def code(self, name: str) -> int:
        i = self.ids.get(name)
        if i is None:
            i = self.ids[name] = len(self.names)
            self.names.append(name)
        return i


class History:
    """Append-only, columnar record of client operations."""

    def __init__(self):
        self._chunks: list[tuple] = []
        self._rows = 0
        self._ops = 0
        self._process = _Codes()
        self._topic = _Codes([""])
        self._error = _Codes([""])
        self._detail: dict[int, str] = {}
        self._columns = None              # (chunks when built, columns)
        self._consts: dict[tuple, np.ndarray] = {}   # (value, dtype) -> a read-only array of that value
        self._roles: dict[str, tuple[str, str]] = {}  # process -> (group, service)
        self.values = Values()

    def describe(self, process: str, group: str | None = None, service: str | None = None):
        """Say which consumer group and service the rows of ``process`` belong to."""
        self._roles[process] = (group or "", service or "")

    def lineage(self):
        """(values, parents): every derived value and the value it came from."""
        return self.values.lineage()

    def roles(self) -> dict[str, tuple[str, str]]:
        return dict(self._roles)

    def __len__(self):
        return self._rows

    def new_op(self) -> int:
        """A fresh operation id: every row of one poll (or one batch send) shares it."""
        self._ops += 1
        return self._ops

    def _append(self, n, time, process, type_, f, topic, keys, values, partition, offsets, error,
                invoke_times, op, txn=-1):
        # Arrays (the common case) pass as they are without calling _column: 3% of a run's instructions.
        # Known names are one dict lookup (no call to _Codes.code), as a run names few processes and topics.
        column, array = self._column, np.ndarray
        error = error or ""
        self._chunks.append((
            n, float(time), self._process.ids[process] if process in self._process.ids
            else self._process.code(process), _TYPE[type_], _F[f],
            self._topic.ids[topic] if topic in self._topic.ids else self._topic.code(topic),
            keys if keys.__class__ is array else column(keys, n, np.int64),
            values if values.__class__ is array else column(values, n, np.int64),
            partition if partition.__class__ is array else column(partition, n, np.int32),
            offsets if offsets.__class__ is array else column(offsets, n, np.int64),
            self._error.ids[error] if error in self._error.ids else self._error.code(error),
            invoke_times if invoke_times.__class__ is array else column(invoke_times, n, float), op, txn))
        self._rows += n

    def _column(self, x, n, dtype):
        """A chunk's field as an array of ``n``: an array as given, a scalar as a view of a constant array kept
        per value (no copy), so that the columns are one ``concatenate`` each at the end."""
        if x.__class__ is int:                            # the common case: one lookup
            key = (x, dtype)
        elif isinstance(x, np.ndarray):
            return x
        elif not isinstance(x, (int, float, np.generic)):
            return np.asarray(x, dtype)
        else:
            key = (None if x != x else x, dtype)          # NaN is one key
        const = self._consts.get(key)
        if const is None or len(const) < n:
            const = np.full(max(n, 1024, 2 * len(const) if const is not None else 0), x, dtype)
            const.flags.writeable = False
            self._consts[key] = const
        return const[:n]

    def sends(self, time, process, type_, topic, partition, values, keys, invoke_times, offsets=-1, error="",
              txn=-1):
        """Completion of the sends of ``values`` (arrays); ``offsets`` is an array, or -1 when unknown.
        ``txn``: the transaction they were sent in (its op id), or -1."""
        n = len(values)
        if n:
            self._append(n, time, process, type_, "send", topic, keys, values, partition, offsets, error,
                         invoke_times, self.new_op(), txn)

    def polls(self, time, process, topic, partition, values, keys, offsets, op, txn=-1):
        """Records one poll returned from one partition; ``op`` groups the partitions of one poll; ``txn`` is
        the transaction the poll was made in (the application's consume-transform-produce loop), or -1."""
        n = len(values)
        if n:
            self._append(n, time, process, "ok", "poll", topic, keys, values, partition, offsets, "",
                         np.nan, op, txn)

    def processed(self, time, process, topic, partition, values, keys, offsets):
        """The application of ``process`` applied the side effects of these records (arrays) of one
        partition; one op, like a poll."""
        n = len(values)
        if n:
            self._append(n, time, process, "ok", "process", topic, keys, values, partition, offsets, "",
                         np.nan, self.new_op())

    def cleaned(self, time, process, f, topic, partition, values, keys, offsets):
        """Records the log cleaner of broker ``process`` removed from its replica of one partition: ``f`` is
        "compact" (an older record of a key, or an expired tombstone) or "retention" (a deleted segment)."""
        n = len(values)
        if n:
            self._append(n, time, process, "info", f, topic, keys, values, partition, offsets, "", np.nan,
                         self.new_op())

    def commits(self, time, process, type_, topic, partitions, offsets, error=""):
        """The outcome of one offset commit of ``process``: committed ``offsets`` (the next offsets to consume)
        of ``partitions`` (arrays) of ``topic``; one row per partition, one op."""
        n = len(partitions)
        if n:
            self._append(n, time, process, type_, "commit", topic, -1, -1, np.asarray(partitions),
                         np.asarray(offsets), error, np.nan, self.new_op())

    def event(self, time, process, f, type_="info", topic="", partition=-1, detail="", error="", value=-1,
              offset=-1, op=None, txn=-1, invoke_time=np.nan, key=-1):
        """A single row that is not a record: a fault, a crash, an assignment, a commit, a transaction's end
        (``txn``: ``value`` is the number of records it sent, ``invoke_time`` when it began)."""
        if detail:
            self._detail[self._rows] = detail
        self._append(1, time, process, type_, f, topic, key, value, partition, offset, error, invoke_time,
                     self.new_op() if op is None else op, txn)

    # ---- export -------------------------------------------------------------------------------------
    def columns(self) -> dict[str, np.ndarray]:
        """The history as numpy columns (codes for strings); the checker works on these. Built once per length
        of the history and kept (read-only), since the checker, the result and its pictures all ask for them."""
        cached = self._columns
        if cached is not None and cached[0] == len(self._chunks):
            return cached[1]
        columns = self._build_columns()
        for array in columns.values():
            array.flags.writeable = False
        self._columns = (len(self._chunks), columns)
        return columns

    def _build_columns(self) -> dict[str, np.ndarray]:
        chunks = self._chunks
        if not chunks:
            empty = {"time": float, "process": np.int32, "type": np.int8, "f": np.int8, "topic": np.int32,
                     "key": np.int64, "value": np.int64, "partition": np.int32, "offset": np.int64,
                     "error": np.int32, "invoke_time": float, "op": np.int64, "txn": np.int64}
            return {name: np.empty(0, dtype) for name, dtype in empty.items()}
        # one Python pass to split the chunks into fields; numpy repeats the per-chunk scalars
        (m, time, proc, type_, f, topic, keys, values, partition, offsets, error, invoke, op, txn) = zip(*chunks)
        counts = np.fromiter(m, np.int64, len(chunks))

        def per_chunk(field, dtype):
            return np.repeat(np.asarray(field, dtype), counts)

        def joined(field, dtype):
            return np.concatenate(field).astype(dtype, copy=False)

        return {
            "time": per_chunk(time, float), "process": per_chunk(proc, np.int32), "type": per_chunk(type_, np.int8),
            "f": per_chunk(f, np.int8), "topic": per_chunk(topic, np.int32), "key": joined(keys, np.int64),
            "value": joined(values, np.int64), "partition": joined(partition, np.int32),
            "offset": joined(offsets, np.int64), "error": per_chunk(error, np.int32),
            "invoke_time": joined(invoke, float), "op": per_chunk(op, np.int64), "txn": per_chunk(txn, np.int64),
        }

    def names(self) -> dict[str, list[str]]:
        """Decoding tables for the coded columns."""
        return {"process": list(self._process.names), "topic": list(self._topic.names),
                "error": list(self._error.names), "type": list(TYPES), "f": list(FUNCTIONS)}

    def to_frame(self):
        """The history as a pandas DataFrame, one row per op record, in the order things happened."""
        import pandas as pd

        cols = self.columns()
        names = self.names()
        frame = {"index": np.arange(self._rows), "time": cols["time"]}
        for name in ("process", "type", "f", "topic"):
            frame[name] = pd.Categorical.from_codes(cols[name], categories=names[name])
        for name in ("key", "value", "partition", "offset"):
            frame[name] = cols[name]
        frame["error"] = pd.Categorical.from_codes(cols["error"], categories=names["error"])
        frame["invoke_time"] = cols["invoke_time"]
        frame["op"] = cols["op"]
        frame["txn"] = cols["txn"]
        for i, column in enumerate(("group", "service")):
            labels = [self._roles.get(p, ("", ""))[i] for p in names["process"]]
            categories = list(dict.fromkeys([""] + labels))
            codes = np.array([categories.index(x) for x in labels] or [0], np.int32)
            frame[column] = pd.Categorical.from_codes(codes[cols["process"]] if self._rows else codes[:0],
                                                      categories=categories)
        detail = np.full(self._rows, "", dtype=object)
        for row, text in self._detail.items():
            detail[row] = text
        frame["detail"] = detail
        return pd.DataFrame(frame, columns=list(COLUMNS))
