"""Values with lineage: every value a run writes is unique, and a derived value knows the value it came from.

Jepsen's checkers need unique values to tell a duplicate from two writes; the book's pipelines need to know which
output came of which input (``exactly_one_output``). One allocator per run hands out both: ``fresh(n)`` for new
inputs, ``derive(parents, by)`` for outputs, recording each output's parent. Deriving is a function: the same
service deriving from the same input again (after a crash, a retry) gets the same value, as the same computation
writes the same record, so a re-processed output is a ``duplicate`` in Jepsen's sense.
"""
from __future__ import annotations

import numpy as np


class Values:
    def __init__(self):
        self.next = 0
        self._derived: list[tuple[int, np.ndarray]] = []     # (first value, parents of that run of values)
        self._made: dict[str, dict[int, int]] = {}           # by -> parent -> the value derived from it

    def fresh(self, n: int) -> np.ndarray:
        """``n`` new values with no parent."""
        first, self.next = self.next, self.next + n
        return np.arange(first, first + n, dtype=np.int64)

    def derive(self, parents, by: str = "") -> np.ndarray:
        """The value ``by`` derives from each parent (an array of values, or one value): new the first time,
        the same one every later time, each recorded as derived from its parent."""
        parents = np.atleast_1d(np.asarray(parents, np.int64))
        made = self._made.setdefault(by, {})
        out = np.empty(len(parents), np.int64)
        new = []
        for i, parent in enumerate(parents.tolist()):
            value = made.get(parent)
            if value is None:
                value = made[parent] = self.next + len(new)
                new.append(parent)
            out[i] = value
        if new:
            self.fresh(len(new))
            self._derived.append((self.next - len(new), np.array(new, np.int64)))
        return out

    def derived_by(self, by: str) -> dict[int, int]:
        """parent -> the value service ``by`` derived from it."""
        return dict(self._made.get(by, {}))

    def lineage(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, parents) of every derived value, in the order they were made."""
        if not self._derived:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        values = np.concatenate([np.arange(v, v + len(p), dtype=np.int64) for v, p in self._derived])
        parents = np.concatenate([p for _, p in self._derived])
        return values, parents
