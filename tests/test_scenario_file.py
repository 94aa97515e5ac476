"""Scenario files: plain data in YAML or JSON, round-tripping every field; services named by import path and
imported only when allowed; bad files fail naming the key."""
import json
import sys
import textwrap

import pytest

import edsim
from edsim import ConfigError, FaultError, apps, faults, invariants

EVERY_FAULT = [faults.partition(["leader"], ["followers"], at=0.5, heal_after=5),
               faults.crash("leader", at=1.0, restart_after=2.0), faults.crash(2, at=4.0),
               faults.isolate("controller", at=1.0, heal_after=1.0),
               faults.pause("consumer-1", at=1.0, duration=0.5), faults.slow(1, at=1.0, factor=3, duration=1.0),
               faults.drop("producer", "leader", 0.1, at=1.0, duration=2.0)]


def scenarios():
    return [
        edsim.Scenario(),
        edsim.Scenario(producer={"acks": "1", "linger.ms": 10}, topic={"partitions": 3, "min.insync.replicas": 2},
                       consumer={"isolation.level": "read_committed"}, broker={"replica.lag.time.max.ms": 10000},
                       workload={"messages": 500, "consumers": 2, "commit": "after-process"},
                       faults=EVERY_FAULT, seed=7, brokers=4),
        edsim.Scenario(topics={"orders": {"partitions": 3}, "counts": {"partitions": 3}},
                       services={"shop": apps.Load(topic="orders", rate=500, keys=20, messages=200),
                                 "reader": edsim.service(apps.Consume, instances=2, topic="orders", group="g")},
                       invariants=[invariants.exactly_one_output("orders", "counts")], seed=1),
    ]


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
@pytest.mark.parametrize("index", range(3))
def test_a_saved_scenario_loads_as_the_same_scenario(tmp_path, suffix, index):
    scenario = scenarios()[index]
    path = scenario.save(tmp_path / f"s{suffix}")
    loaded = edsim.Scenario.load(path)
    assert loaded.replace(invariants=[]) == scenario.replace(invariants=[])   # invariants compare by identity
    assert repr(loaded) == repr(scenario) and loaded.to_code() == scenario.to_code()
    assert loaded.to_dict() == scenario.to_dict() == edsim.Scenario.from_dict(scenario.to_dict()).to_dict()


def test_the_file_is_plain_data_and_names_builtins_by_their_public_module(tmp_path):
    data = scenarios()[2].to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["services"]["shop"]["class"] == "edsim.apps:Load"
    assert data["services"]["reader"]["instances"] == 2
    assert data["invariants"] == [{"kind": "exactly_one_output", "input_topic": "orders", "output_topic": "counts"}]
    assert scenarios()[1].to_dict()["faults"][1] == {"kind": "crash", "target": "leader", "at": 1.0,
                                                     "restart_after": 2.0}


def test_a_loaded_scenario_runs_as_the_original():
    scenario = edsim.Scenario(producer={"acks": "1"}, workload={"messages": 300}, faults=EVERY_FAULT[:2], seed=1)
    again = edsim.Scenario.from_dict(json.loads(json.dumps(scenario.to_dict())))
    assert again.run().history.equals(scenario.run().history)


SERVICE_MODULE = '''
import edsim
RAN = []
RAN.append("imported")


class Echo(edsim.Service):
    topic = "events"

    def run(self, ctx):
        yield ctx.sleep(0.1)
'''


def test_a_service_outside_edsim_is_imported_only_when_allowed(tmp_path, monkeypatch):
    (tmp_path / "mysvc.py").write_text(SERVICE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mysvc", None)
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        topics: {events: {partitions: 1}}
        services:
          echo: {class: "mysvc:Echo", instances: 2, options: {topic: events}}
        """))
    with pytest.raises(ConfigError, match=r"services\.echo\.class='mysvc:Echo' is not imported.*allow_import=True"):
        edsim.Scenario.load(path)
    assert "mysvc" not in sys.modules                    # nothing was executed
    scenario = edsim.Scenario.load(path, allow_import=True)
    assert scenario.services["echo"].cls.__name__ == "Echo" and scenario.services["echo"].instances == 2
    assert sys.modules["mysvc"].RAN == ["imported"]
    assert scenario.to_dict()["services"]["echo"]["class"] == "mysvc:Echo"
    sys.modules.pop("mysvc", None)


def test_a_class_defined_in_a_script_cannot_be_saved_by_name(tmp_path):
    class Local(edsim.Service):
        def run(self, ctx):
            yield ctx.sleep(1)
    scenario = edsim.Scenario(services={"x": edsim.service(Local)})
    with pytest.raises(ConfigError, match="cannot be saved by name"):
        scenario.save(tmp_path / "s.yaml")


@pytest.mark.parametrize("text, error, match", [
    ("producer: {ackz: 1}", ConfigError, r"unknown producer config 'ackz'; did you mean 'acks'"),
    ("producer: {acks: 2}", ConfigError, r"acks=2 is not allowed"),
    ("seeed: 1", ConfigError, r"unknown scenario config 'seeed'; did you mean 'seed'"),
    ("faults: [{kind: crash, target: leader, at: -1}]", FaultError, r"faults\[0\]: at=-1 is not allowed"),
    ("faults: [{kind: explode, target: leader, at: 1}]", FaultError, r"faults\[0\]: kind='explode'"),
    ("faults: [{kind: crash, target: leader, at: 1, restart: 2}]", ConfigError,
     r"unknown faults\[0\] \(crash\) config 'restart'; did you mean 'restart_after'"),
    ("faults: [{kind: crash, at: 1}]", FaultError, r"faults\[0\] \(crash\): target missing"),
    ("services: {x: {class: 'edsim.apps:Nope'}}", ConfigError, r"edsim.apps has no Nope"),
    ("services: {x: {class: 'edsim.apps:Load', options: {rat: 3}}}", ConfigError,
     r"services\.x: service 'x': option 'rat' is not allowed; did you mean 'rate'"),
    ("invariants: [{kind: never_below, service: nobody, store: s, bound: 0}]", ConfigError, r"service 'nobody'"),
    ("[1, 2]", ConfigError, r"a scenario is a mapping"),
    ("producer: {acks: [", ConfigError, r"is not valid YAML"),
])
def test_a_bad_file_fails_naming_the_key(tmp_path, text, error, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(error, match=match):
        edsim.Scenario.load(path)


def test_file_names_and_formats(tmp_path):
    with pytest.raises(ConfigError, match=r"ends in .yaml, .yml or .json"):
        edsim.Scenario().save(tmp_path / "s.toml")
    with pytest.raises(ConfigError, match="cannot be read"):
        edsim.Scenario.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        edsim.Scenario.load(tmp_path / "bad.json")


def test_a_power_loss_survives_the_round_trip():
    scenario = edsim.Scenario(faults=[faults.crash(1, at=2.0, restart_after=3.0, power_loss=True)])
    data = scenario.to_dict()
    assert data["faults"] == [{"kind": "crash", "target": 1, "at": 2.0, "restart_after": 3.0, "power_loss": True}]
    assert edsim.Scenario.from_dict(data).faults[0].options == {"power_loss": True}
