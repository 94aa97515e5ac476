"""The scenario layer: what a Result tells a person first, and progress on long runs."""
import edsim
from edsim import faults


def test_a_long_run_reports_its_progress():
    heard = []
    edsim.Scenario(workload={"messages": 3000, "rate": 200}).run(seed=1, progress=lambda p, t: heard.append((p, t)))
    phases = [p for p, _t in heard]
    assert phases[0] == "workload" and phases[-1] == "done"
    assert {"drain", "heal", "catch-up"} <= set(phases)
    assert [t for _p, t in heard] == sorted(t for _p, t in heard)
    assert sum(p == "workload" for p in phases) >= 3                 # every 5 simulated seconds of 15


def test_summary_and_members_tell_the_story_of_a_run():
    result = edsim.simulate(topic={"partitions": 2}, workload={"consumers": 2, "commit": "after-process"},
                            faults=[faults.crash("consumer-1", at=1.0, restart_after=1.0)], seed=3)
    summary = result.summary()
    assert summary.loc["records sent", "value"] == 3000
    assert summary.loc["processed", "value"] == result.counts()["processed"] == 3000
    members = result.members()
    assert list(members.index) == ["consumer-1", "consumer-2"]
    assert members.loc["consumer-1", "crashes"] == 1 and members["processed"].sum() >= 3000
    assert (members["commits ok"] > 0).all()
