"""Truth in the summary (issue 16 item 7): ``Result.losses()`` and the summary's section "what the run lost or
left undone", computed from the history and broker truth, whatever the checker's Jepsen names say. A learner
must never read "nothing lost" on a run that lost data."""
import edsim
from edsim import faults
from edsim.result import LOSS_SECTION

from test_durability import UNCLEAN


def _section(result):
    s = result.summary()
    return s[s.index.str.startswith("lost or undone") | (s.index == LOSS_SECTION)]


def test_rf1_with_its_broker_down_at_the_end_has_unreadable_records():
    """RF=1 and the only replica's broker crashes for good: what it held cannot be read, though it is not
    lost (the broker may return). The checker calls them unseen; the section says unreadable."""
    result = edsim.simulate(topic={"replication.factor": 1},
                            workload={"messages": 3000, "rate": 200, "processing_time": 0.01},
                            faults=[faults.crash("leader", at=5.0)], seed=1)
    losses = result.losses()
    unreadable = losses[losses["what"].str.startswith("acknowledged, unreadable")]
    assert len(unreadable) == 1 and unreadable["records"].iloc[0] > 500
    assert "broker 1" in unreadable["why"].iloc[0]
    assert not (losses["what"] == "acknowledged, absent from the final log").any()
    never = losses[losses["what"] == "never processed"]
    assert len(never) == 1 and never["group"].iloc[0] == "edsim-workload" and never["records"].iloc[0] > 0
    short = losses[losses["what"] == "not caught up"]
    assert short[["topic", "partition"]].values.tolist() == [["events", 0]]
    # KIP-966: the ISR emptied when its only member was fenced, which left it eligible (ELR, last known leader)
    assert short["why"].iloc[0].startswith("offline: no leader (eligible replicas down: broker 1)")
    text = _section(result).to_string()
    assert "unreadable" in text and "events-0" in text and "nothing" not in text


def test_unclean_election_records_absent_from_the_final_log_even_when_lost_write_is_zero():
    """After an unclean election acknowledged records vanish; consumers had read them, so Jepsen's checker
    names them inconsistent-offsets and lost-write may be 0. The section counts them as absent."""
    result = edsim.simulate(**UNCLEAN, topic={"unclean.leader.election.enable": True}, seed=1)
    losses = result.losses()
    absent = losses[losses["what"] == "acknowledged, absent from the final log"]
    assert len(absent) == 1 and absent["records"].iloc[0] > 500
    assert absent["records"].iloc[0] > result.anomalies["lost-write"]
    text = _section(result).to_string()
    assert "absent from the final log" in text and "nothing" not in text
    assert "lost-write" in result.summary().index          # Jepsen's names are kept as they are


def test_a_safe_run_says_nothing_was_lost():
    result = edsim.simulate(topic={"min.insync.replicas": 2}, workload={"messages": 2000, "rate": 400},
                            faults=[faults.crash("leader", at=1.0, restart_after=2.0)], seed=1)
    assert not len(result.losses())
    section = _section(result)
    assert list(section.index) == [LOSS_SECTION] and section["value"].iloc[0].startswith("nothing")


def test_a_group_that_never_joined_left_every_record_unprocessed():
    result = edsim.simulate(consumer={"session.timeout.ms": 1000, "heartbeat.interval.ms": 300},
                            workload={"messages": 200, "rate": 200}, seed=1)
    never = result.losses().query("what == 'never processed'")
    assert never["records"].tolist() == [200]


def test_a_catch_up_that_ran_out_of_time_names_the_partition_and_why():
    """When the final read stops at CATCH_UP_LIMIT, each partition it had not read to its end is named with
    where it stopped (a unit check on a finished run whose reader is made to look short)."""
    from types import SimpleNamespace
    from edsim import losses
    from edsim.run import Run
    run = Run(edsim.Scenario(topic={"partitions": 2}, workload={"messages": 300}, seed=1))
    run.finish()
    reader = run.reader
    tp = ("events", 1)
    short = SimpleNamespace(assignment=reader.assignment,
                            position=lambda t: 7 if t == tp else reader.position(t),
                            end_offset=reader.end_offset, high_watermarks=reader.high_watermarks)
    fake = SimpleNamespace(reader=short, caught_up=False, cluster=run.cluster)
    gaps = losses.catch_up_gaps(fake)
    assert gaps == [("events", 1, f"read to offset 7 of {reader.end_offset(tp)} before the catch-up time limit")]
    assert losses.catch_up_gaps(SimpleNamespace(reader=short, caught_up=True, cluster=run.cluster)) == []
    # read_committed: read to the last stable offset, which an open transaction held below the high watermark
    held = SimpleNamespace(assignment=reader.assignment, position=lambda t: 7 if t == tp else reader.position(t),
                           end_offset=lambda t: 7 if t == tp else reader.end_offset(t),
                           high_watermarks=reader.high_watermarks)
    assert losses.catch_up_gaps(SimpleNamespace(reader=held, caught_up=False, cluster=run.cluster)) == [
        ("events", 1, f"an open transaction held the last stable offset at 7, below the high watermark "
                      f"{reader.high_watermarks[tp]}, until the catch-up time limit")]
