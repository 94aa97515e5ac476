"""Tests of edsim.checker: each anomaly on a small hand-built history, and a near miss where it must not appear.

Definitions after Jepsen's Kafka checker, jepsen-io/jepsen ``jepsen/src/jepsen/tests/kafka.clj``; the
docstrings name the function of that file each test follows.
"""
import numpy as np
import pandas as pd
import pytest

from edsim.checker import ANOMALIES, check, detector
from edsim.history import History

LIVE = ("lost-write", "unseen", "duplicate", "inconsistent-offsets", "nonmonotonic-send", "poll-skip",
        "nonmonotonic-poll")


# ---- building histories --------------------------------------------------------------------------------
def send(h, t, offsets, values=None, process="producer", type_="ok", topic="events", partition=0,
         invoke=None):
    """Completion of sends; by default value = 100 + offset, invoked 0.5 s before completion."""
    offsets = np.asarray(offsets, np.int64)
    values = offsets + 100 if values is None else np.asarray(values, np.int64)
    invoke = np.full(len(values), t - 0.5) if invoke is None else np.asarray(invoke, float)
    stored = offsets if len(offsets) == len(values) else -1
    h.sends(t, process, type_, topic, partition, values, np.zeros(len(values), np.int64), invoke,
            offsets=stored)


def poll(h, t, offsets, values=None, process="consumer-1", topic="events", partition=0, op=None):
    """One poll returning records of one partition; by default value = 100 + offset."""
    offsets = np.asarray(offsets, np.int64)
    values = offsets + 100 if values is None else np.asarray(values, np.int64)
    h.polls(t, process, topic, partition, values, np.zeros(len(values), np.int64), offsets,
            h.new_op() if op is None else op)


def counts(h):
    return {k: v for k, v in check(h).anomalies.items() if v}


def evidence(h, name):
    return list(check(h).cases[name]["evidence"])


# ---- report shape --------------------------------------------------------------------------------------
def test_every_anomaly_is_reported_in_order_with_zero_and_an_empty_frame():
    """Every name of the checker's :errors map (kafka.clj ``analysis``), plus the two the book adds."""
    h = History()
    send(h, 1, [0, 1])
    poll(h, 2, [0, 1])
    report = check(h)
    assert tuple(report.anomalies) == ANOMALIES == (
        "lost-write", "unseen", "duplicate", "inconsistent-offsets", "nonmonotonic-send", "poll-skip",
        "nonmonotonic-poll", "G1a", "precommitted-read", "G1c", "duplicate-processing", "lost-processing")
    assert tuple(report.cases) == ANOMALIES
    assert all(v == 0 for v in report.anomalies.values())
    assert report.valid
    for name, frame in report.cases.items():
        assert isinstance(frame, pd.DataFrame) and frame.empty, name
        assert {"process", "topic", "partition", "offset", "time", "evidence"} <= set(frame.columns), name


def test_an_empty_history_is_clean():
    """kafka.clj ``checker`` on a history with no operations: no :errors at all."""
    report = check(History())
    assert report.anomalies == dict.fromkeys(ANOMALIES, 0)


def test_detector_rejects_unknown_names():
    """Detectors register under the names of kafka.clj's :errors map (and the book's two) only."""
    with pytest.raises(ValueError, match="unknown anomaly"):
        detector("lost-update")


# ---- lost-write ----------------------------------------------------------------------------------------
def test_lost_write_acknowledged_value_that_a_later_read_passed():
    """kafka.clj ``lost-write-cases``: an ok send at or below the highest index read, never read."""
    h = History()
    send(h, 1, [0, 1, 2, 3, 4])
    poll(h, 2, [0, 1])
    poll(h, 3, [3, 4], process="consumer-2")
    report = check(h)
    assert report.anomalies["lost-write"] == 1
    assert report.anomalies["unseen"] == 0
    case = report.cases["lost-write"].iloc[0]
    assert (case.process, case.topic, case.partition, case.offset, case.value) == ("producer", "events", 0, 2, 102)
    assert (case["index"], case.max_read_index, case.read_offset, case.read_process) == (2, 4, 4, "consumer-2")
    assert case.evidence == ("value 102 was acknowledged to producer at offset 2 of events-0 (t=1) but a poll "
                             "read offset 4 of that partition (consumer-2 at t=3) and no poll ever read value 102")


def test_unread_tail_is_unseen_not_lost():
    """Near miss (kafka.clj ``lost-write-cases``): nothing read past the unread values, so they are not lost."""
    h = History()
    send(h, 1, [0, 1, 2, 3, 4])
    poll(h, 2, [0, 1])
    assert counts(h) == {"unseen": 3}


def test_lost_write_is_judged_per_partition():
    """Near miss: reads far along another partition say nothing about this one (Jepsen works per key)."""
    h = History()
    send(h, 1, [0, 1, 2])
    send(h, 1, [0, 1, 2], values=[200, 201, 202], partition=1)
    poll(h, 2, [0])
    poll(h, 2, [0, 1, 2], values=[200, 201, 202], partition=1)
    assert counts(h) == {"unseen": 2}


def test_lost_write_bound_is_the_first_index_of_the_highest_read_value():
    """kafka.clj ``lost-write-cases``: the bound is the latest of the *earliest* indices of read values.

    Value 100 sits at offsets 0 and 3. A poll that read it at offset 3 proves only that index 0 was
    reached, so 101 and 102 are unseen, not lost (a plain "highest offset read" rule would call them lost).
    """
    h = History()
    send(h, 1, [0, 1, 2])
    poll(h, 2, [0])
    poll(h, 3, [3], values=[100], process="consumer-2")
    assert counts(h) == {"unseen": 2, "duplicate": 1}


# ---- unseen --------------------------------------------------------------------------------------------
def test_unseen_acknowledged_but_never_read():
    """kafka.clj ``unseen``: ok sends no poll returned; acks=0 sends (no offset) can only be unseen."""
    h = History()
    send(h, 1, [0, 1, 2, 3])
    send(h, 1.5, [-1], values=[300])                     # acks=0: ok, offset unknown
    poll(h, 2, [0, 1, 2])
    report = check(h)
    assert report.anomalies["unseen"] == 2
    assert report.anomalies["lost-write"] == 0
    frame = report.cases["unseen"].set_index("value")
    assert frame.loc[103, "offset"] == 3 and frame.loc[300, "offset"] == -1
    assert frame.loc[103, "evidence"] == ("value 103 was acknowledged to producer at offset 3 of events-0 (t=1) "
                                          "but no poll ever read it; the furthest any poll read there is offset 2")
    assert frame.loc[300, "evidence"] == ("value 300 was acknowledged to producer to events-0 without an offset "
                                          "(acks=0) (t=1.5) but no poll ever read it; the furthest any poll read "
                                          "there is offset 2")


def test_unseen_in_a_partition_nobody_polled():
    """kafka.clj ``unseen``; ``lost-write-cases`` only looks at keys some poll read, so this is not lost."""
    h = History()
    send(h, 1, [0], partition=3)
    assert evidence(h, "unseen") == ["value 100 was acknowledged to producer at offset 0 of events-3 (t=1) but no "
                                     "poll ever read it; no poll ever read that partition"]


def test_unseen_acks_zero_sends_and_no_polls_at_all():
    """kafka.clj ``unseen``: sends acknowledged without an offset ([:send k [nil v]]) are still sent."""
    h = History()
    send(h, 1, [-1, -1], values=[7, 8])
    report = check(h)
    assert report.anomalies["unseen"] == 2 and report.anomalies["lost-write"] == 0
    assert report.cases["unseen"]["evidence"].iloc[0] == (
        "value 7 was acknowledged to producer to events-0 without an offset (acks=0) (t=1) but no poll ever read "
        "it; no poll ever read that partition")


def test_info_and_fail_sends_never_read_are_not_unseen():
    """Near miss (kafka.clj ``unseen`` counts only :ok sends): an info or failed send owes nobody a read."""
    h = History()
    send(h, 1, [0, 1])
    send(h, 1, [-1, -1], values=[400, 401], type_="info")
    send(h, 1, [-1], values=[402], type_="fail")
    poll(h, 2, [0, 1])
    assert counts(h) == {}


def test_a_resent_value_read_once_is_clean():
    """Near miss: an application resend after a crash (first info, then ok) that was read is neither
    unseen, lost nor duplicate."""
    h = History()
    send(h, 1, [-1], values=[105], type_="info")
    send(h, 2, [5], values=[105])
    poll(h, 3, [5], values=[105])
    assert counts(h) == {}


# ---- duplicate -----------------------------------------------------------------------------------------
def test_duplicate_value_at_two_offsets():
    """kafka.clj ``duplicate-cases``: one value at more than one offset."""
    h = History()
    send(h, 1, [5])
    poll(h, 2, [5, 6, 7], values=[105, 106, 105])
    report = check(h)
    assert report.anomalies["duplicate"] == 1
    assert report.anomalies["inconsistent-offsets"] == 0
    case = report.cases["duplicate"].iloc[0]
    assert (case.value, case.offset, case["count"], case.offsets) == (105, 7, 2, (5, 7))
    assert case.evidence == ("value 105 was sent once but appears at 2 different offsets: offset 5 of events-0 "
                             "(acknowledged to producer at t=1); offset 7 of events-0 (read by consumer-1 at t=2)")


def test_duplicate_after_a_resend():
    """kafka.clj ``duplicate-cases``: the classic cause, a resend of a write whose first outcome was unknown."""
    h = History()
    send(h, 1, [-1], values=[105], type_="info")
    send(h, 2, [6], values=[105])
    poll(h, 3, [5, 6], values=[105, 105])
    report = check(h)
    assert report.anomalies["duplicate"] == 1
    assert report.cases["duplicate"]["evidence"].iloc[0] == (
        "value 105 was sent 2 times (resent) and appears at 2 different offsets: offset 6 of events-0 "
        "(acknowledged to producer at t=2); offset 5 of events-0 (read by consumer-1 at t=3)")


def test_duplicate_across_partitions():
    """Our values are unique per run (Jepsen's per key), so a value in two partitions is a duplicate."""
    h = History()
    send(h, 1, [0])
    poll(h, 2, [0], partition=1)
    report = check(h)
    assert report.anomalies["duplicate"] == 1
    assert report.cases["duplicate"].iloc[0].locations == ("events-0@0", "events-1@0")


def test_reading_one_record_twice_is_not_a_duplicate():
    """Near miss: two consumers, or one after a re-assign, reading the same offset see one value once."""
    h = History()
    send(h, 1, [0, 1])
    poll(h, 2, [0, 1])
    poll(h, 2, [0, 1], process="consumer-2")
    h.event(3, "consumer-1", "assign", topic="events", partition=0)
    poll(h, 4, [0, 1])
    assert counts(h) == {}


# ---- inconsistent-offsets ------------------------------------------------------------------------------
def test_inconsistent_offsets_two_values_at_one_offset():
    """kafka.clj ``version-orders`` :errors: an offset whose set of values has more than one element."""
    h = History()
    send(h, 1, [0, 1])
    poll(h, 2, [0, 1], values=[100, 999])
    report = check(h)
    assert report.anomalies["inconsistent-offsets"] == 1
    case = report.cases["inconsistent-offsets"].iloc[0]
    assert (case.offset, case["values"], case.process, case.time) == (1, (101, 999), "consumer-1", 2)
    assert case.evidence == ("offset 1 of events-0 holds 2 different values: 101 (acknowledged to producer at t=1); "
                             "999 (read by consumer-1 at t=2)")
    # As in Jepsen, the acknowledged 101 is then lost: a poll read its index and not it.
    assert report.anomalies["lost-write"] == 1


def test_same_offset_in_different_partitions_is_consistent():
    """Near miss: offsets are per partition; equal offsets of two partitions hold different values."""
    h = History()
    send(h, 1, [0, 1])
    send(h, 1, [0, 1], values=[200, 201], partition=1)
    poll(h, 2, [0, 1])
    poll(h, 2, [0, 1], values=[200, 201], partition=1)
    poll(h, 3, [0, 1], process="consumer-2")
    assert counts(h) == {}


# ---- nonmonotonic-send ---------------------------------------------------------------------------------
def test_nonmonotonic_send_later_send_lands_at_a_lower_offset():
    """kafka.clj ``nonmonotonic-send-cases``: a process's sends to a key going back in the version order.

    Our producer is asynchronous, so "a process's order" is invoke order: 100 was sent (t=1) before 101
    (t=1.1), but a retried batch put 100 after 101.
    """
    h = History()
    send(h, 2, [10], values=[101], invoke=[1.1])
    send(h, 3, [11], values=[100], invoke=[1.0])
    report = check(h)
    assert report.anomalies["nonmonotonic-send"] == 1
    case = report.cases["nonmonotonic-send"].iloc[0]
    assert (case.value, case.offset, case.prev_value, case.prev_offset) == (101, 10, 100, 11)
    assert case.evidence == ("producer sent value 100 (t=1) before value 101 (t=1.1) to events-0, but 100 was "
                             "written at offset 11 and 101 at offset 10")


def test_invoke_times_equal_up_to_float_noise_are_ordered_by_value():
    """Near miss: the simulation clock reaches one instant by different sums; at equal invoke times the
    application's order is the order of values, and 100 (offset 10) did go before 101 (offset 11)."""
    h = History()
    send(h, 2, [11], values=[101], invoke=[1.9999999999998908])
    send(h, 2, [10], values=[100], invoke=[2.0])
    assert counts(h) == {"unseen": 2}


def test_sends_completing_out_of_order_but_in_offset_order_are_monotonic():
    """Near miss: completions arrive out of history order, yet offsets follow the order of sending; other
    producers' and other partitions' offsets interleave freely."""
    h = History()
    send(h, 2, [11], values=[101], invoke=[1.1])
    send(h, 3, [10], values=[100], invoke=[1.0])
    send(h, 4, [5], values=[102], invoke=[1.2], partition=1)
    send(h, 4, [7], values=[103], invoke=[0.9], process="producer-2")
    send(h, 5, [12], values=[104], invoke=[1.3])
    poll(h, 6, [7, 10, 11, 12], values=[103, 100, 101, 104])
    poll(h, 6, [5], values=[102], partition=1)
    assert counts(h) == {}


# ---- poll-skip -----------------------------------------------------------------------------------------
def test_poll_skip_between_polls():
    """kafka.clj ``poll-skip+nonmonotonic-cases`` :skip: successive reads of a process skip indices."""
    h = History()
    send(h, 1, [0, 1, 2, 3, 4, 5])
    poll(h, 2, [0, 1])
    poll(h, 3, [4, 5])
    poll(h, 4, [2, 3], process="consumer-2")
    report = check(h)
    assert report.anomalies["poll-skip"] == 1
    case = report.cases["poll-skip"].iloc[0]
    assert (case.prev_offset, case.offset, case.skipped, case.skipped_offsets, case.same_poll) == (
        1, 4, 2, (2, 3), False)
    assert case.evidence == ("consumer-1 read offset 1 (value 101) of events-0 (t=2) and next offset 4 (value 104) "
                             "in a later poll (t=3), skipping 2 records known to be at offset 2, 3")


def test_poll_skip_within_one_poll():
    """kafka.clj ``int-poll-skip+nonmonotonic-cases``: we fold the within-one-poll case into poll-skip."""
    h = History()
    send(h, 1, [0, 1, 2])
    poll(h, 2, [0, 2])
    poll(h, 3, [1], process="consumer-2")
    report = check(h)
    assert report.anomalies["poll-skip"] == 1
    assert report.cases["poll-skip"].iloc[0].same_poll


def test_gap_no_record_occupies_is_not_a_skip():
    """Near miss (kafka.clj ``version-orders``: indices are dense offsets): offset 2 is a transaction
    marker nobody wrote or read, so reading 1 then 3 is contiguous."""
    h = History()
    send(h, 1, [0, 1, 3, 4])
    poll(h, 2, [0, 1])
    poll(h, 3, [3, 4])
    assert counts(h) == {}


@pytest.mark.parametrize("f", ["assign", "subscribe", "crash"])
def test_assign_or_crash_between_polls_resets_the_skip_check(f):
    """Near miss (kafka.clj ``poll-skip+nonmonotonic-cases`` drops last reads on :assign/:subscribe; a
    crashed Jepsen client gets a new process): after the reset, jumping ahead is allowed."""
    h = History()
    send(h, 1, [0, 1, 2, 3, 4, 5])
    poll(h, 2, [0, 1])
    h.event(2.5, "consumer-1", f, topic="events", partition=0)
    poll(h, 3, [4, 5])
    poll(h, 4, [0, 1, 2, 3, 4, 5], process="consumer-2")
    assert counts(h) == {}


def test_reset_of_another_process_does_not_reset():
    """Near miss for the near miss: a crash of consumer-2 does not excuse consumer-1's skip."""
    h = History()
    send(h, 1, [0, 1, 2, 3, 4, 5])
    poll(h, 2, [0, 1])
    h.event(2.5, "consumer-2", "crash")
    h.event(2.6, "consumer-1", "assign", type_="fail")
    poll(h, 3, [4, 5])
    poll(h, 4, [2, 3], process="consumer-2")
    assert counts(h) == {"poll-skip": 1}


# ---- nonmonotonic-poll ---------------------------------------------------------------------------------
def test_nonmonotonic_poll_going_back_and_repeating():
    """kafka.clj ``poll-skip+nonmonotonic-cases`` :nonmonotonic: delta < 1, i.e. back or the same value."""
    h = History()
    send(h, 1, [0, 1, 2])
    poll(h, 2, [0, 1, 2])
    poll(h, 3, [1, 2])          # back from 2 to 1
    poll(h, 4, [2])             # 2 again
    report = check(h)
    assert report.anomalies["nonmonotonic-poll"] == 2
    frame = report.cases["nonmonotonic-poll"]
    assert list(frame["delta"]) == [-1, 0]
    assert list(frame["evidence"]) == [
        "consumer-1 read offset 2 (value 102) of events-0 (t=2) and next offset 1 (value 101) in a later poll "
        "(t=3), going back 1 record with no assign, subscribe or crash in between",
        "consumer-1 read offset 2 (value 102) of events-0 (t=3) and the same offset again in a later poll (t=4), "
        "with no assign, subscribe or crash in between"]


@pytest.mark.parametrize("f", ["assign", "crash"])
def test_reading_again_after_assign_or_crash_is_monotonic(f):
    """Near miss: after a rebalance or a crash, a consumer restarts from its committed offset."""
    h = History()
    send(h, 1, [0, 1, 2])
    poll(h, 2, [0, 1, 2])
    h.event(2.5, "consumer-1", f, topic="events", partition=0)
    poll(h, 3, [1, 2])
    poll(h, 4, [0], process="consumer-2")
    assert counts(h) == {}


# ---- inputs and paths ----------------------------------------------------------------------------------
def _mixed_history(scale=1):
    """One case of each live anomaly but lost-write (two); offsets multiplied by ``scale``."""
    h = History()
    s = scale
    send(h, 1, np.array([0, 1, 2, 3, 4, 5]) * s, values=[100, 101, 102, 103, 104, 105])
    send(h, 1.5, [8 * s], values=[108], invoke=[0.1])                  # nonmonotonic-send: sent before 100
    poll(h, 2, np.array([0, 1, 3]) * s, values=[100, 101, 103])         # poll-skip over 102
    poll(h, 3, [1 * s], values=[101])                                   # nonmonotonic-poll: 3 -> 1
    poll(h, 4, np.array([4, 5]) * s, values=[104, 999], process="consumer-2")  # inconsistent-offsets at 5
    poll(h, 4.5, np.array([6, 8]) * s, values=[100, 108], process="consumer-3")  # duplicate: 100 at 0 and 6
    send(h, 5, [9 * s], values=[109])                                   # unseen: nothing read past it
    return h                                                            # lost-write: 102 and 105


EXPECTED = {"lost-write": 2, "unseen": 1, "duplicate": 1, "inconsistent-offsets": 1, "nonmonotonic-send": 1,
            "poll-skip": 1, "nonmonotonic-poll": 1}


def test_all_seven_together():
    """kafka.clj ``analysis`` runs every detector over one history; here each finds its own case."""
    assert counts(_mixed_history()) == EXPECTED


def test_dataframe_input_gives_the_same_report():
    """check() accepts History.to_frame() as well and finds exactly the same cases."""
    h = _mixed_history()
    a, b = check(h), check(h.to_frame())
    assert a.anomalies == b.anomalies
    for name in LIVE:
        pd.testing.assert_frame_equal(a.cases[name], b.cases[name])


def test_sparse_offsets_take_the_sorting_path_with_the_same_result():
    """Offsets far apart (no dense table fits) are ranked by sorting; indices, and so the result, agree."""
    dense, sparse = check(_mixed_history()), check(_mixed_history(scale=10**12))
    assert sparse.anomalies == dense.anomalies == EXPECTED | dict.fromkeys(ANOMALIES[7:], 0)
    for name in LIVE:
        a, b = dense.cases[name], sparse.cases[name]
        same = [c for c in a.columns if "offset" not in c and c not in ("evidence", "locations")]
        pd.testing.assert_frame_equal(a[same], b[same])


# ---- scale ---------------------------------------------------------------------------------------------
def clean_history(rows=3_000_000, partitions=4, batch=500):
    """A clean history of about ``rows`` rows: two producers, two consumers, a re-assign with re-reads,
    transaction-marker gaps, batches completing out of order, and a final catch-up read."""
    h = History()
    per_round = partitions * batch
    rounds = rows // (3 * per_round)
    next_offset = np.zeros(partitions, np.int64)
    written = [[] for _ in range(partitions)]           # (offsets, values) batches per partition
    value = 0
    keys = np.zeros(batch, np.int64)
    owner = {p: f"consumer-{1 + p % 2}" for p in range(partitions)}
    read_upto = [0] * partitions
    for k in range(rounds):
        t = float(k)
        pending = []
        for p in range(partitions):
            offsets = next_offset[p] + np.arange(batch)
            if k % 7 == 3:                              # a transaction marker after this batch
                next_offset[p] += 1
            next_offset[p] += batch
            values = value + np.arange(batch)
            value += batch
            written[p].append((offsets, values))
            invoke = t + np.arange(batch) * 1e-4
            pending.append((f"producer-{1 + p % 2}", p, values, invoke, offsets))
        if k % 5 == 1:                                  # partition 0's batch completes after the next one
            held, pending = pending[0], pending[1:]
        elif k % 5 == 2:
            pending.append(held)
        for process, p, values, invoke, offsets in pending:
            h.sends(t + 0.5, process, "ok", "events", p, values, keys, invoke, offsets=offsets)
        for p in range(partitions):
            if k % 11 == 10 and p == 0:                 # rebalance: re-read the last two batches
                h.event(t + 0.6, owner[p], "assign", topic="events", partition=p)
                read_upto[p] -= 2
            while read_upto[p] < len(written[p]):
                offsets, values = written[p][read_upto[p]]
                h.polls(t + 0.7, owner[p], "events", p, values, keys, offsets, h.new_op())
                read_upto[p] += 1
    h.event(rounds + 1.0, "catch-up", "assign", topic="events", partition=-1)
    for p in range(partitions):
        offsets = np.concatenate([o for o, _ in written[p]])
        values = np.concatenate([v for _, v in written[p]])
        for start in range(0, offsets.size, 10 * batch):
            chunk = slice(start, start + 10 * batch)
            h.polls(rounds + 2.0, "catch-up", "events", p, values[chunk], np.zeros(values[chunk].size, np.int64),
                    offsets[chunk], h.new_op())
    return h


def test_clean_three_million_row_history_reports_nothing():
    """A valid history gets an empty :errors map from kafka.clj ``analysis``; ours reports every count 0.
    (Speed is measured outside the tests.)"""
    h = clean_history()
    assert len(h) >= 3_000_000
    report = check(h)
    assert report.anomalies == dict.fromkeys(ANOMALIES, 0)
    assert all(frame.empty for frame in report.cases.values())
