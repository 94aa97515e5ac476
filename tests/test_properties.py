"""Safety under any fault schedule, and the replication invariants of the TLA+ specification.

With RF=3, min.insync.replicas=2, acks=all, idempotence on and unclean election off, Kafka promises that an
acknowledged write survives any failure of a minority: no generated schedule of crashes, isolations, network
partitions and pauses (healed before the final read) may produce lost-write, duplicate, inconsistent-offsets or
nonmonotonic-send (Kafka design docs, "Replication"; Jepsen's Kafka checker for the anomaly names).
WeakIsr and StrongIsr come from hachikuji/kafka-specification (kafka_replication.tla); with
``edsim.debug.invariants`` on, the model asserts them after every change of high watermark, ISR or log.
"""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import edsim
from edsim import faults

TARGETS = st.sampled_from([1, 2, 3, "leader", "followers", "controller"])
TIME = st.floats(min_value=0.2, max_value=6.0).map(lambda t: round(t, 3))
DURATION = st.floats(min_value=0.1, max_value=15.0).map(lambda t: round(t, 3))
SIDE = st.sampled_from([[1], [2], [3], ["leader"], ["controller"], [1, 2]])
OTHER = st.sampled_from([[3], ["followers"], [2, 3], ["controller"]])

FAULT = st.one_of(
    st.builds(lambda t, at, d: faults.crash(t, at=at, restart_after=d), TARGETS, TIME, DURATION),
    st.builds(lambda t, at, d: faults.isolate(t, at=at, heal_after=d), TARGETS, TIME, DURATION),
    st.builds(lambda t, at, d: faults.pause(t, at=at, duration=d), TARGETS, TIME, DURATION),
    st.builds(lambda a, b, at, d: faults.partition(a, b, at=at, heal_after=d), SIDE, OTHER, TIME, DURATION),
)

SAFE = dict(topic={"min.insync.replicas": 2}, producer={"acks": "all", "enable.idempotence": True},
            broker={"unclean.leader.election.enable": False, "edsim.debug.invariants": True},
            workload={"messages": 2000, "rate": 500})


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=st.lists(FAULT, min_size=1, max_size=4), seed=st.integers(0, 10_000))
def test_safe_settings_survive_any_fault_schedule(schedule, seed):
    result = edsim.simulate(**SAFE, faults=schedule, seed=seed)
    found = {name: result.anomalies[name] for name in
             ("lost-write", "duplicate", "inconsistent-offsets", "nonmonotonic-send") if result.anomalies[name]}
    assert found == {}, (schedule, seed, {n: result.anomaly_cases[n]["evidence"].head(3).tolist() for n in found})
    assert len(result.faults) == len(schedule)                     # every fault really fired


LEGACY = dict(workload={"messages": 6000, "rate": 200},
              faults=[faults.crash(1, at=1.0), faults.partition([3], [2], at=9.0, heal_after=60),
                      faults.crash(2, at=12.0)])


def test_strong_isr_fails_with_high_watermark_truncation():
    """Pre-KIP-101 truncation cuts an ISR member below the leader's high watermark: StrongIsr catches it."""
    with pytest.raises(edsim.InvariantViolation, match="StrongIsr violated") as caught:
        edsim.simulate(**LEGACY, broker={"edsim.legacy.truncation": "high-watermark",
                                         "edsim.debug.invariants": True}, seed=1)
    assert "ISR member broker 3" in str(caught.value)


def test_invariants_hold_with_leader_epochs_on_the_same_schedule():
    result = edsim.simulate(**LEGACY, broker={"edsim.debug.invariants": True}, seed=1)
    assert result.anomalies["lost-write"] == 0 and result.anomalies["inconsistent-offsets"] == 0


def test_invariants_are_off_by_default():
    """Without the debug flag the legacy run completes and shows its loss as anomalies instead."""
    result = edsim.simulate(**LEGACY, broker={"edsim.legacy.truncation": "high-watermark"}, seed=1)
    assert result.anomalies["inconsistent-offsets"] > 0
