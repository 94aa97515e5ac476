"""Tests of edsim.checker: each anomaly on a small hand-built history, and a near miss where it must not appear.

Definitions after Jepsen's Kafka checker, jepsen-io/jepsen ``jepsen/src/jepsen/tests/kafka.clj``; the
docstrings name the function of that file each test follows. ``duplicate-processing`` and ``lost-processing``
are edsim's own definitions, in Jepsen's style, for the book's chapter 12 ("the duplicates problem").
"""
import numpy as np
import pandas as pd
import pytest

from edsim.checker import ANOMALIES, check, detector
from edsim.history import FUNCTIONS, History

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


def process(h, t, offsets, values=None, process="consumer-1", topic="events", partition=0):
    """The application of ``process`` applied the side effects of these records; value = 100 + offset."""
    offsets = np.asarray(offsets, np.int64)
    values = offsets + 100 if values is None else np.asarray(values, np.int64)
    h.processed(t, process, topic, partition, values, np.zeros(len(values), np.int64), offsets)


def commit(h, t, offset, process="consumer-1", type_="ok", error="", topic="events", partition=0):
    """One partition's offset commit (``offset`` = the next offset to consume), as the model writes it."""
    h.event(t, process, "commit", type_=type_, topic=topic, partition=partition, offset=offset, error=error)


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


def test_invoke_times_equal_up_to_float_noise_are_one_instant():
    """Near miss: the simulation clock reaches one instant by different sums; at equal invoke times nothing
    orders the two sends, and 100 (offset 10) and 101 (offset 11) are no case."""
    h = History()
    send(h, 2, [11], values=[101], invoke=[1.9999999999998908])
    send(h, 2, [10], values=[100], invoke=[2.0])
    assert counts(h) == {"unseen": 2}


def test_sends_invoked_at_the_same_instant_are_not_ordered_by_their_values():
    """Near miss (found by a fault fuzzer): a pipeline sends the outputs of one poll at the same instant, and
    derived values follow the inputs, not the order of sending: 20 sent before 10 at t = 1, landing at offsets 0
    and 1, is no reordering (ordering ties by value reported one)."""
    h = History()
    send(h, 2, [0, 1], values=[20, 10], invoke=[1.0, 1.0])
    assert "nonmonotonic-send" not in counts(h)
    h = History()                                     # a send invoked strictly later that lands lower still is
    send(h, 2, [0, 1], values=[20, 10], invoke=[1.0, 1.0])
    send(h, 3, [2], values=[5], invoke=[0.9])
    assert counts(h).get("nonmonotonic-send") == 1


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


# ---- consumer groups: duplicate-processing and lost-processing ------------------------------------------
# edsim's own definitions, in Jepsen's style, for the book's chapter 12 ("the duplicates problem"): Jepsen's
# kafka.clj checks what consumers read, not what they did with it.
def test_history_records_process_and_commit_rows():
    """``process`` is a new function at the end of FUNCTIONS (old codes keep their numbers); processed()
    writes one row per record as one op, like polls(); commits() one row per partition as one op."""
    assert FUNCTIONS[:8] == ("send", "poll", "commit", "txn", "assign", "subscribe", "crash", "fault")
    assert FUNCTIONS[8:12] == ("process", "state", "view", "effect")
    h = History()
    process(h, 2, [5, 6], process="consumer-2", partition=1)
    h.commits(3, "consumer-2", "fail", "events", np.array([0, 1]), np.array([4, 7]), error="ILLEGAL_GENERATION")
    frame = h.to_frame()
    assert list(frame["f"]) == ["process", "process", "commit", "commit"]
    assert list(frame["type"]) == ["ok", "ok", "fail", "fail"]
    assert list(frame["process"].astype(str)) == ["consumer-2"] * 4
    assert list(frame["value"]) == [105, 106, -1, -1]
    assert list(frame["partition"]) == [1, 1, 0, 1]
    assert list(frame["offset"]) == [5, 6, 4, 7]
    assert list(frame["error"].astype(str)) == ["", "", "ILLEGAL_GENERATION", "ILLEGAL_GENERATION"]
    assert frame["op"].nunique() == 2 and frame["op"].iloc[0] == frame["op"].iloc[1]


def test_duplicate_processing_by_two_consumers():
    """duplicate-processing (edsim, chapter 12): consumer-1 processed 0..3 but its commit failed in a
    rebalance, so consumer-2 started again from the last committed offset and processed 2 and 3 again."""
    h = History()
    send(h, 1, [0, 1, 2, 3])
    poll(h, 2, [0, 1, 2, 3])
    process(h, 2.5, [0, 1, 2, 3])
    commit(h, 2.2, 2)
    commit(h, 3, 4, type_="fail", error="REBALANCE_IN_PROGRESS")
    poll(h, 4, [2, 3], process="consumer-2")
    process(h, 4.25, [2, 3], process="consumer-2")
    commit(h, 5, 4, process="consumer-2")
    report = check(h)
    assert counts(h) == {"duplicate-processing": 2}
    case = report.cases["duplicate-processing"].iloc[0]
    assert (case.value, case.topic, case.partition, case.offset, case["count"]) == (102, "events", 0, 2, 2)
    assert (case.process, case.time, case.processes, case.times) == (
        "consumer-2", 4.25, ("consumer-1", "consumer-2"), (2.5, 4.25))
    assert case.evidence == ("value 102 (events-0 offset 2) was processed 2 times: by consumer-1 at t=2.5 and by "
                             "consumer-2 at t=4.25")
    assert list(report.cases["duplicate-processing"]["value"]) == [102, 103]


def test_duplicate_processing_by_one_consumer_and_of_a_duplicated_record():
    """duplicate-processing (edsim, chapter 12) counts applications, whoever applied them: one consumer
    three times (crashed before committing, twice), and a producer duplicate processed at both offsets."""
    h = History()
    send(h, 1, [0, 1, 2], values=[100, 101, 100])          # value 100 written twice (a producer resend)
    for t in (2, 3, 4):
        poll(h, t, [0, 1])
        process(h, t + 0.5, [0, 1])
        h.event(t + 0.75, "consumer-1", "crash")
    poll(h, 5, [2], values=[100], process="consumer-2")
    process(h, 5.5, [2], values=[100], process="consumer-2")
    report = check(h)
    assert report.anomalies["duplicate-processing"] == 2
    assert report.anomalies["duplicate"] == 1
    frame = report.cases["duplicate-processing"].set_index("value")
    assert frame.loc[101, "evidence"] == ("value 101 (events-0 offset 1) was processed 3 times: by consumer-1 at "
                                          "t=2.5, by consumer-1 at t=3.5 and by consumer-1 at t=4.5")
    assert frame.loc[100, "count"] == 4 and frame.loc[100, "processes"][-1] == "consumer-2"
    assert frame.loc[100, "evidence"].endswith("and by consumer-2 at t=5.5 (events-0 offset 2)")


def test_polled_twice_but_processed_once_is_not_duplicate_processing():
    """Near miss (edsim, chapter 12): reading a record again is harmless; only applying it again is
    duplicate-processing. Both consumers, and consumer-1 after a crash, read 0..3; each record was
    processed once."""
    h = History()
    send(h, 1, [0, 1, 2, 3])
    poll(h, 2, [0, 1, 2, 3])
    process(h, 2.5, [0, 1])
    h.event(2.75, "consumer-1", "crash")
    poll(h, 3, [0, 1, 2, 3])
    poll(h, 3, [0, 1, 2, 3], process="consumer-2")
    process(h, 3.5, [2, 3], process="consumer-2")
    commit(h, 4, 4, process="consumer-2")
    assert counts(h) == {}


def _consumed(h, unprocessed=(), upto=13):
    """Offsets 0..upto-1 sent, read by consumer-1, and processed except ``unprocessed``."""
    send(h, 1, np.arange(upto))
    poll(h, 2, np.arange(upto))
    process(h, 2.5, [o for o in range(upto) if o not in unprocessed])


def test_lost_processing_committed_past_a_record_never_processed():
    """lost-processing (edsim, chapter 12): the group committed offset 10 (the next to consume), but offset
    7 was never processed by anyone."""
    h = History()
    _consumed(h, unprocessed=[7])
    commit(h, 4, 10, process="consumer-2")
    report = check(h)
    assert counts(h) == {"lost-processing": 1}
    case = report.cases["lost-processing"].iloc[0]
    assert (case.value, case.topic, case.partition, case.offset) == (107, "events", 0, 7)
    assert (case.process, case.time) == ("producer", 1)      # located at its acknowledgement
    assert (case.committed_offset, case.commit_process, case.commit_time) == (10, "consumer-2", 4)
    assert case.evidence == ("value 107 at offset 7 of events-0 is below the committed offset 10 (committed by "
                             "consumer-2 at t=4) but no consumer ever processed it")


def test_unprocessed_records_at_and_above_the_commit_are_not_lost():
    """Near miss (edsim, chapter 12): the committed offset is the next to consume, so 10 and 12, never
    processed, are merely not done yet."""
    h = History()
    _consumed(h, unprocessed=[10, 11, 12])
    commit(h, 4, 10)
    assert counts(h) == {}


@pytest.mark.parametrize("type_, error", [("fail", "ILLEGAL_GENERATION"), ("fail", "UNKNOWN_MEMBER_ID"),
                                          ("info", "REQUEST_TIMED_OUT")])
def test_a_commit_that_failed_or_may_have_failed_does_not_count(type_, error):
    """Near miss (edsim, chapter 12): only an ok commit moves the group's offset; past offset 7 there are
    only commits that failed, or whose outcome is unknown."""
    h = History()
    _consumed(h, unprocessed=[7])
    commit(h, 3, 5)
    commit(h, 4, 10, type_=type_, error=error)
    assert counts(h) == {}


@pytest.mark.parametrize("commits, lost", [
    ([(3, 5), (4, 10)], 1),        # 10 is the last commit: 7 is below it
    ([(3, 10), (4, 5)], 0),        # the last commit moved back to 5, below 7
    ([(4, 5), (3, 10)], 0),        # recorded out of order: the last in time (t=4, offset 5) counts
    ([(4, 10), (3, 5)], 1),
])
def test_the_last_ok_commit_in_time_counts(commits, lost):
    """lost-processing (edsim, chapter 12): C is the group's last ok commit in time, even one that moves
    back (a consumer with an older position committing after a rebalance), whichever consumer made it."""
    h = History()
    _consumed(h, unprocessed=[7])
    for t, offset in commits:
        commit(h, t, offset, process=f"consumer-{int(t)}")
    assert check(h).anomalies["lost-processing"] == lost


def test_lost_processing_is_judged_per_partition():
    """lost-processing (edsim, chapter 12): each partition against its own last commit; a partition
    never committed has none, however little was processed there."""
    h = History()
    _consumed(h, unprocessed=[7])
    commit(h, 4, 10)
    send(h, 1, np.arange(13), values=200 + np.arange(13), partition=1)          # nothing processed or committed
    poll(h, 2, np.arange(13), values=200 + np.arange(13), partition=1)
    send(h, 1, np.arange(13), values=300 + np.arange(13), partition=2)
    poll(h, 2, np.arange(13), values=300 + np.arange(13), partition=2)
    process(h, 2.5, [0, 1, 2], values=[300, 301, 302], partition=2)
    commit(h, 4, 3, partition=2)                                                # only 3.. unprocessed: above it
    commit(h, 4, 13, topic="other")                                             # another topic entirely
    report = check(h)
    assert counts(h) == {"lost-processing": 1}
    assert report.cases["lost-processing"].iloc[0].value == 107


def test_lost_processing_when_offsets_are_committed_before_processing():
    """lost-processing (edsim, chapter 12), the at-most-once story: consumer-1 committed 10 when it polled,
    processed 0..5 and crashed; consumer-2 went on from 10. Only the catch-up reader ever read 6..9 again,
    and the version order it adds still places them below the commit."""
    h = History()
    send(h, 1, np.arange(13))
    poll(h, 2, np.arange(10))
    commit(h, 2.1, 10)
    process(h, 2.5, np.arange(6))
    h.event(2.75, "consumer-1", "crash")
    poll(h, 3, [10, 11, 12], process="consumer-2")
    process(h, 3.5, [10, 11, 12], process="consumer-2")
    commit(h, 4, 13, process="consumer-2")
    h.event(5, "catch-up", "assign", topic="events", partition=-1)
    poll(h, 6, np.arange(13), process="catch-up")
    report = check(h)
    assert counts(h) == {"lost-processing": 4}
    frame = report.cases["lost-processing"]
    assert list(frame["value"]) == [106, 107, 108, 109]
    assert set(frame["commit_process"]) == {"consumer-2"} and set(frame["committed_offset"]) == {13}


def test_a_value_at_several_offsets_is_judged_at_each_and_reported_once():
    """lost-processing (edsim, chapter 12): value 107 sits at offsets 7 and 8 (a producer duplicate), both
    below the commit, and nobody processed it: one case, at its first offset."""
    h = History()
    values = [100, 101, 102, 103, 104, 105, 106, 107, 107, 109, 110]
    send(h, 1, np.arange(11), values=values)
    poll(h, 2, np.arange(11), values=values)
    process(h, 2.5, [o for o in range(11) if o not in (7, 8)], values=[v for v in values if v != 107])
    commit(h, 4, 10)
    report = check(h)
    assert counts(h) == {"duplicate": 1, "lost-processing": 1}
    assert report.cases["lost-processing"].iloc[0].offset == 7


def test_a_value_processed_at_another_offset_is_not_lost():
    """Near miss (edsim, chapter 12): value 107 sits at offsets 7 (below the commit) and 11 (above); it was
    processed at 11, so its side effect exists and nothing was lost."""
    h = History()
    values = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 107]
    send(h, 1, np.arange(11), values=values[:11])
    send(h, 1.5, [11], values=[107])                                            # resent after a timeout
    poll(h, 2, np.arange(12), values=values)
    process(h, 2.5, [o for o in range(12) if o != 7], values=values[:7] + values[8:])
    commit(h, 4, 10)
    assert counts(h) == {"duplicate": 1}


def test_no_process_rows_reports_neither():
    """edsim, chapter 12: without process rows (producer-only scenarios, consumers that only poll) neither
    anomaly is judged, though the group committed past records it read twice. With a single process row,
    the same history has 9 records committed past and never processed."""
    h = History()
    send(h, 1, np.arange(13))
    poll(h, 2, np.arange(13))
    poll(h, 2, np.arange(13), process="consumer-2")
    commit(h, 4, 10)
    assert counts(h) == {}
    process(h, 5, [0])
    assert counts(h) == {"lost-processing": 9}


def test_dataframe_input_gives_the_same_consumer_group_cases():
    """check() on History.to_frame() finds the same duplicate-processing and lost-processing cases."""
    h = History()
    send(h, 1, np.arange(13))
    poll(h, 2, np.arange(10))
    commit(h, 2.1, 10)
    process(h, 2.5, np.arange(6))
    poll(h, 3, np.arange(3, 13), process="consumer-2")
    process(h, 3.5, np.arange(3, 4), process="consumer-2")
    commit(h, 4, 10, process="consumer-2")                                      # 6..9 lost, 10.. not yet
    a, b = check(h), check(h.to_frame())
    assert a.anomalies == b.anomalies
    assert (a.anomalies["duplicate-processing"], a.anomalies["lost-processing"]) == (1, 4)
    for name in ("duplicate-processing", "lost-processing"):
        pd.testing.assert_frame_equal(a.cases[name], b.cases[name])


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


# ---- transactions: G1a, precommitted-read, G1c (kafka.clj g1a-cases, precommitted-read-cases; Elle) -------
def txn_sends(h, t, offsets, txn, type_="ok", values=None, process="producer", partition=0):
    """A transaction's sends as the model records them when it ends: ok with offsets (committed) or fail with
    the offsets they took (aborted); then its ``txn`` row."""
    offsets = np.asarray(offsets, np.int64)
    values = offsets + 100 if values is None else np.asarray(values, np.int64)
    h.sends(t, process, type_, "events", partition, values, np.zeros(len(values), np.int64),
            np.full(len(values), t - 0.5), offsets=offsets, error="" if type_ == "ok" else "TRANSACTION_ABORTED",
            txn=txn)
    h.event(t, process, "txn", type_=type_, value=len(values), op=txn, txn=txn, invoke_time=t - 0.5)


def test_g1a_a_read_of_an_aborted_write():
    """kafka.clj ``g1a-cases``: an ok poll observed a value whose (transactional) write failed."""
    h = History()
    txn_sends(h, 1, [0, 1], txn=h.new_op(), type_="fail")
    txn_sends(h, 2, [3], txn=h.new_op())                  # offset 2 holds the ABORT marker
    poll(h, 3, [0, 1, 3], process="dirty")
    poll(h, 3, [3], process="clean")
    report = check(h)
    assert counts(h) == {"G1a": 2}                       # and no poll-skip for the reader that skipped them
    assert report.cases["G1a"]["value"].tolist() == [100, 101]
    assert set(report.cases["G1a"]["process"]) == {"dirty"}
    assert "in a transaction that aborted" in report.cases["G1a"]["evidence"].iloc[0]


def test_g1a_by_value_a_write_of_an_aborted_transaction_that_landed_later():
    """A value only ever sent in aborted transactions, read anywhere, is G1a (Jepsen compares values)."""
    h = History()
    t = h.new_op()
    h.sends(1, "producer", "fail", "events", 0, np.array([107]), np.zeros(1, np.int64), np.array([0.5]),
            error="DELIVERY_TIMEOUT", txn=t)
    h.event(1, "producer", "txn", type_="fail", value=1, op=t, txn=t)
    poll(h, 3, [5], values=[107])
    assert counts(h) == {"G1a": 1}


def test_near_miss_a_value_aborted_then_committed_again_is_no_g1a():
    """The pipeline writes an output again after an abort: read where it committed, it is no aborted read."""
    h = History()
    txn_sends(h, 1, [0], values=[500], txn=h.new_op(), type_="fail")
    txn_sends(h, 2, [2], values=[500], txn=h.new_op())
    poll(h, 3, [2], values=[500])
    assert counts(h) == {}


def test_precommitted_read_a_transaction_reads_its_own_write():
    """kafka.clj ``precommitted-read-cases``: a transaction polled a value it sent itself."""
    h = History()
    t = h.new_op()
    h.polls(1.5, "consumer-1", "events", 0, np.array([100]), np.zeros(1, np.int64), np.array([0]), h.new_op(),
            txn=t)
    txn_sends(h, 2, [0], txn=t)
    report = check(h)
    assert report.anomalies["precommitted-read"] == 1
    assert report.cases["precommitted-read"]["txn"].tolist() == [t]


def test_g1c_two_committed_transactions_read_each_other():
    """Cyclic information flow over write-read edges (Adya's G1c, found by Elle in Jepsen)."""
    h = History()
    t1, t2 = h.new_op(), h.new_op()
    h.polls(1.2, "consumer-1", "events", 1, np.array([201]), np.zeros(1, np.int64), np.array([0]), h.new_op(),
            txn=t1)                                         # T1 reads what T2 writes
    h.polls(1.3, "consumer-2", "events", 0, np.array([100]), np.zeros(1, np.int64), np.array([0]), h.new_op(),
            txn=t2)                                         # T2 reads what T1 writes
    txn_sends(h, 2, [0], txn=t1)
    txn_sends(h, 2, [0], values=[201], txn=t2, process="producer-2", partition=1)
    report = check(h)
    assert report.anomalies["G1c"] == 1
    assert report.cases["G1c"]["transactions"].tolist() == [(t1, t2)]


def test_near_miss_a_chain_of_transactions_is_no_g1c():
    h = History()
    t1, t2 = h.new_op(), h.new_op()
    txn_sends(h, 1, [0], txn=t1)
    h.polls(1.3, "consumer-2", "events", 0, np.array([100]), np.zeros(1, np.int64), np.array([0]), h.new_op(),
            txn=t2)
    txn_sends(h, 2, [0], values=[201], txn=t2, process="producer-2", partition=1)
    poll(h, 3, [0], values=[201], partition=1)
    assert counts(h) == {}
