"""The detectors, one function per anomaly (Jepsen's names, plus edsim's two processing anomalies)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import cases_frame, detector
from .analysis import _KEPT, _SHOWN, Analysis, _offsets_text, _plural, _stable_order, _t, _value_codes  # noqa: F401

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
    # Sends invoked at the same instant have no order the history can prove (a pipeline sends the outputs of one
    # poll together, and derived values do not follow the order of sending): they are taken in offset order, so
    # only a send invoked strictly later that lands lower is a case.
    # Completions usually come in invoke order within a group already: sort only the groups that do not.
    order = _stable_order(group)
    g, it, of = group[order], invoke[order], off[order]
    same = g[1:] == g[:-1]
    in_order = (it[1:] > it[:-1]) | ((it[1:] == it[:-1]) & (of[1:] >= of[:-1]))
    if not in_order[same].all():
        late = np.unique(g[1:][same & ~in_order])
        sub = np.flatnonzero(np.isin(g, late))
        order[sub] = order[sub][np.lexsort((of[sub], it[sub], g[sub]))]
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
    if skip and a.cleaned.size and len(sel):
        # offsets a cleaner removed are gaps in the log, not records the reader skipped
        left = np.array([np.count_nonzero(~np.isin(a.value[o.rank_row[r1 + 1:r2]], a.cleaned))
                         for r1, r2 in zip(ri, rj)], np.int64)
        real = left > 0
        pi, pj, ri, rj, delta = pi[real], pj[real], ri[real], rj[real], left[real] + 1
    same_poll = a.cols["op"][pi] == a.cols["op"][pj]
    evidence, skipped = [], []
    for x, y, d, r1, r2, sp in zip(pi, pj, delta, ri, rj, same_poll):
        who, name = a.proc_name(a.process[y]), a.row_tp_name(y)
        o1, o2, v1, v2 = int(a.offset[x]), int(a.offset[y]), int(a.value[x]), int(a.value[y])
        first = f"{who} read offset {o1} (value {v1}) of {name} (t={_t(a.time[x])})"
        when = "in the same poll" if sp else f"in a later poll (t={_t(a.time[y])})"
        if skip:
            between = o.rank_row[r1 + 1:r2]
            gap = a.offset[between[~np.isin(a.value[between], a.cleaned)]]
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
    """Per consumer group: two services reading one topic each process every record once, and that is not a
    duplicate."""
    rows = np.flatnonzero(a.applied)
    vid, nv = _value_codes(a.value[rows] * (len(a.names["group"]) + 1) + a.group[rows])
    twice = rows[np.bincount(vid, minlength=nv)[vid] > 1]
    twice = twice[np.lexsort((twice, a.time[twice], a.group[twice], a.value[twice]))]   # by value and group, in time
    v, g_ = a.value[twice], a.group[twice]
    groups = np.split(twice, np.flatnonzero((v[1:] != v[:-1]) | (g_[1:] != g_[:-1])) + 1) if twice.size else []
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
    """Per consumer group that processes anything: its own commits set the bound, its own members' ``process``
    rows count (a group that records no processing is not judged)."""
    o = a.order
    entries, crows = [], []
    for g in np.unique(a.group[a.applied]).tolist():     # no consumer processes anything: nothing to judge
        mine = a.group == g
        bound, commit_row = a.commit_bound_of(a.committed & mine)
        below = np.flatnonzero(o.offset < bound[o.tp])
        below = below[~np.isin(o.value[below], a.value[a.applied & mine])]
        below = below[~np.isin(o.value[below], a.cleaned)]        # compacted or retained away: never to be read
        _, first = np.unique(o.value[below], return_index=True)
        found = np.sort(below[first])                      # each value once: its first entry below a commit
        entries.append(found)
        crows.append(commit_row[o.tp[found]])
    entries = np.concatenate(entries) if entries else np.empty(0, np.int64)
    crow = np.concatenate(crows) if crows else np.empty(0, np.int64)
    rows, tp = o.rows[entries], o.tp[entries]
    evidence = [f"value {int(a.value[r])} at offset {int(a.offset[r])} of {a.tp_name(t)} is below the committed "
                f"offset {int(a.offset[c])} (committed by {a.proc_name(a.process[c])} at t={_t(a.time[c])}) "
                f"but no consumer ever processed it" for r, t, c in zip(rows, tp, crow)]
    return cases_frame({**a.locate(rows), "committed_offset": a.offset[crow],
                        "commit_process": [a.proc_name(a.process[c]) for c in crow],
                        "commit_time": a.time[crow]}, evidence)



# ---- transactions: Jepsen's G1a, precommitted-read and G1c ------------------------------------------------
@detector("G1a")
def _g1a(a: Analysis) -> pd.DataFrame:
    """An ok poll read a write of an aborted transaction (Jepsen's g1a-cases: a failed write was visible)."""
    rows = np.flatnonzero(a.aborted_read)
    writes = np.flatnonzero(a.aborted_write)
    key = (a.tp_of(writes) << 40) | a.offset[writes]
    by_place = {k: w for k, w, o in zip(key.tolist(), writes.tolist(), a.offset[writes].tolist()) if o >= 0}
    by_value = dict(zip(a.value[writes].tolist(), writes.tolist()))
    writer = np.array([by_place.get(k, by_value.get(v)) for k, v in
                       zip(((a.tp_of(rows) << 40) | a.offset[rows]).tolist(), a.value[rows].tolist())], np.int64)
    evidence = [f"{a.proc_name(a.process[r])} read value {int(a.value[r])} at offset {int(a.offset[r])} of "
                f"{a.row_tp_name(r)} (t={_t(a.time[r])}), written by {a.proc_name(a.process[w])} in a transaction "
                f"that aborted (t={_t(a.time[w])})" for r, w in zip(rows, writer)]
    return cases_frame({**a.locate(rows), "writer": [a.proc_name(a.process[w]) for w in writer],
                        "abort_time": a.time[writer] if writer.size else np.empty(0)}, evidence)


def _txn_rows(a: Analysis, f: str, mask=None) -> np.ndarray:
    rows = (a.cols["f"] == a._code("f", f)) & (a.txn >= 0)
    return np.flatnonzero(rows if mask is None else rows & mask)


@detector("precommitted-read")
def _precommitted_read(a: Analysis) -> pd.DataFrame:
    """A transaction polled a value it sent itself (Jepsen: in Kafka's model a sent value is invisible to
    every poller, its own transaction included, until that transaction commits)."""
    sends = _txn_rows(a, "send")
    polls = _txn_rows(a, "poll", a.polled | a.aborted_read)
    if not sends.size or not polls.size:
        return cases_frame({**a.locate(np.empty(0, np.int64)), "txn": np.empty(0, np.int64)}, [])
    mine = pd.DataFrame({"txn": a.txn[sends], "value": a.value[sends]}).drop_duplicates()
    read = pd.DataFrame({"txn": a.txn[polls], "value": a.value[polls], "row": polls})
    hits = read.merge(mine, on=["txn", "value"]).sort_values("row").drop_duplicates("txn")
    rows = hits["row"].to_numpy(np.int64)
    evidence = [f"{a.proc_name(a.process[r])} read value {int(a.value[r])} at offset {int(a.offset[r])} of "
                f"{a.row_tp_name(r)} (t={_t(a.time[r])}) inside transaction {int(a.txn[r])}, which sent that "
                f"value itself before committing" for r in rows]
    return cases_frame({**a.locate(rows), "txn": a.txn[rows]}, evidence)


def _cycles(edges: dict) -> list[list]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on:
                low[node] = min(low[node], index[child])
    return out


@detector("G1c")
def _g1c(a: Analysis) -> pd.DataFrame:
    """Cyclic information flow between committed transactions over write-read edges: T1 -> T2 when T2 polled
    a value T1 sent (Adya's G1c; Jepsen finds it with Elle). With read_committed a cycle cannot form: each
    transaction reads only what committed before it."""
    committed = set(a.txn[_txn_rows(a, "txn", a.cols["type"] == a._code("type", "ok"))].tolist())
    sends = _txn_rows(a, "send", a.acked)
    polls = _txn_rows(a, "poll", a.polled | a.aborted_read)
    empty = cases_frame({**a.locate(np.empty(0, np.int64)), "transactions": []}, [])
    if not committed or not sends.size or not polls.size:
        return empty
    w = pd.DataFrame({"writer": a.txn[sends], "value": a.value[sends]})
    r = pd.DataFrame({"reader": a.txn[polls], "value": a.value[polls], "row": polls})
    e = r.merge(w, on="value")
    e = e[(e["writer"] != e["reader"]) & e["writer"].isin(committed) & e["reader"].isin(committed)]
    edges: dict = {}
    for writer, reader in zip(e["writer"].tolist(), e["reader"].tolist()):
        edges.setdefault(writer, set()).add(reader)
    comps = _cycles(edges)
    if not comps:
        return empty
    rows, txns, evidence = [], [], []
    for comp in comps:
        inside = e[e["writer"].isin(comp) & e["reader"].isin(comp)].sort_values("row")
        rows.append(int(inside["row"].iloc[0]))
        txns.append(tuple(int(t) for t in comp))
        flows = "; ".join(f"transaction {int(x.reader)} read value {int(x.value)} written by transaction "
                          f"{int(x.writer)}" for x in inside.drop_duplicates(["writer", "reader"]).itertuples())
        evidence.append(f"transactions {', '.join(str(t) for t in comp)} each read what another of them wrote, "
                        f"all committed: {flows}")
    return cases_frame({**a.locate(np.array(rows, np.int64)), "transactions": txns}, evidence)
