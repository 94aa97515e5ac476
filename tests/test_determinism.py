"""A run is a function of its scenario and seed (the issue: "for 50 seeds two runs give equal histories; different
seeds give different ones"), and each component has its own random stream (engine/world.py: "adding a component
never shifts the numbers another one sees")."""
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import edsim
from edsim import faults
from edsim.engine import World

SEEDS = range(50)
SCENARIO = edsim.Scenario(
    workload={"messages": 300, "rate": 300, "keys": 5},
    faults=[
        faults.crash("leader", at=0.3, restart_after=0.5),                         # leader crash with restart
        faults.partition(["leader"], ["followers"], at=1.0, heal_after=0.5),       # and a partition
        faults.drop("producer", "leader", 0.2, at=0.1, duration=0.3),              # random loss on one link
    ],
)


@functools.lru_cache(maxsize=None)
def first_run(seed):
    return SCENARIO.run(seed=seed)


def fingerprint(result):
    """What two runs must agree on: the history, the anomalies, what the brokers hold, when faults fired."""
    return {
        "anomalies": dict(result.anomalies),
        "replicas": result.truth.replicas(),
        "leaders": result.truth.leaders(),
        "faults": [(t, repr(f), names) for t, f, names in result.faults],
        "duration": result.duration,
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_same_seed_same_history(seed):
    a, b = first_run(seed), SCENARIO.run(seed=seed)
    pd.testing.assert_frame_equal(a.history, b.history)
    fa, fb = fingerprint(a), fingerprint(b)
    pd.testing.assert_frame_equal(fa.pop("replicas"), fb.pop("replicas"))
    pd.testing.assert_frame_equal(fa.pop("leaders"), fb.pop("leaders"))
    assert fa == fb
    assert len(a.faults) == 3                      # the faults did fire


def test_the_scenario_seed_and_the_run_seed_agree():
    pd.testing.assert_frame_equal(SCENARIO.replace(seed=7).run().history, first_run(7).history)


def test_consecutive_seeds_give_different_histories():
    same = [s for s in SEEDS[:-1] if first_run(s).history.equals(first_run(s + 1).history)]
    assert same == []
    # Not just the times: what happened differs too (which key each record had, where it landed).
    sends = {s: tuple(first_run(s).history.query("f == 'send' and type == 'ok'")[["value", "key", "offset"]]
                      .itertuples(index=False)) for s in SEEDS[:10]}
    assert len(set(sends.values())) > 1


def test_runs_do_not_share_state():
    """A run in between (another scenario, another seed) changes nothing about the next one."""
    other = edsim.simulate(producer={"acks": "1"}, workload={"messages": 100}, seed=99)
    assert len(other.history) > 0
    pd.testing.assert_frame_equal(SCENARIO.run(seed=3).history, first_run(3).history)


_CHILD = """
import hashlib, json, sys
import pandas as pd
sys.path.insert(0, sys.argv[1])
from tests.test_determinism import SCENARIO
out = {}
for seed in (0, 1, 2):
    r = SCENARIO.run(seed=seed)
    digest = hashlib.sha256(pd.util.hash_pandas_object(r.history, index=True).values.tobytes()).hexdigest()
    out[seed] = [digest, r.anomalies]
print(json.dumps(out))
"""


def test_same_history_whatever_python_hash_seed():
    """Iterating over a set or dict of strings must not steer a run: two interpreters with different
    PYTHONHASHSEED give the same histories."""
    root = str(Path(__file__).resolve().parent.parent)
    outputs = []
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", _CHILD, root], env=env, capture_output=True, text=True,
                              timeout=120, cwd=root)
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    assert len({digest for digest, _ in outputs[0].values()}) == 3


# ---- random streams ----------------------------------------------------------------------------------------
def draws(world, name, n=20):
    stream = world.rng(name)
    return [stream.random() for _ in range(n)]


def test_a_stream_does_not_depend_on_other_streams_being_drawn():
    alone = draws(World(11), "network")
    w = World(11)
    draws(w, "workload", 1000)
    w.rng("producer/partitioner").getrandbits(64)
    assert draws(w, "network") == alone


def test_a_stream_goes_on_rather_than_restarting():
    w = World(11)
    assert w.rng("network") is w.rng("network")
    first, then = draws(w, "network", 5), draws(w, "network", 5)
    assert first + then == draws(World(11), "network", 10)


def test_streams_differ_by_name_and_by_seed():
    assert draws(World(11), "network") != draws(World(11), "workload")
    assert draws(World(11), "network") != draws(World(12), "network")
    assert draws(World(11), "network") == draws(World(11), "network")


def test_runs_do_not_depend_on_pythons_hash_seed():
    """Iterating a set of topic-partitions follows Python's string hashing, which PYTHONHASHSEED randomises per
    process: the model must never let that order reach the simulation (two processes, two hash seeds)."""
    import os
    import subprocess
    import sys
    code = ("import hashlib, edsim; from edsim import faults; r = edsim.Scenario(workload={'messages': 800, "
            "'consumers': 2, 'pipeline': 'exactly_once_v2', 'transaction_size': 10}, topic={'partitions': 3}, "
            "consumer={'isolation.level': 'read_committed', 'session.timeout.ms': 6000, "
            "'heartbeat.interval.ms': 2000}, faults=[faults.crash('consumer-1', at=1.0, restart_after=1.0)], "
            "seed=3).run(); print(hashlib.sha256(r.history.to_csv().encode()).hexdigest())")
    digests = set()
    for hash_seed in ("0", "1"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        digests.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True).stdout.strip())
    assert len(digests) == 1


@pytest.mark.parametrize("extra", [
    {},
    {"faults": [faults.crash("producer", at=0.5, restart_after=0.3)]},           # records wait for a dead producer
])
def test_the_workloads_partition_plan_is_only_a_shortcut(monkeypatch, extra):
    """The load hands keyed records to the producer grouped by a plan made once (apps/load.py); without the
    plan the producer sorts each step's records itself. Both must give the very same run."""
    from edsim.apps.load import Load
    scenario = edsim.Scenario(topic={"partitions": 4}, workload={"messages": 2000, "rate": 2000, "keys": 50},
                              seed=5, **extra)
    planned = scenario.run()
    monkeypatch.setattr(Load, "_partition_plan", lambda self, producer, plan: None)
    unplanned = scenario.run()
    pd.testing.assert_frame_equal(planned.history, unplanned.history)
    assert len(planned.history) > 4000
