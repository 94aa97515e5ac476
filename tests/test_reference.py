"""What a user reads: help(edsim.simulate) and help(edsim.Scenario) show real signatures and docstrings, the
options reference in docs/options.md is generated from edsim/configs.py and up to date, and a misspelt anomaly
name answers with the names there are."""
import inspect
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import edsim
from edsim import ConfigError

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ["brokers", "topic", "producer", "consumer", "broker", "workload", "faults", "seed", "topics", "services",
          "invariants", "acls"]


def test_simulate_has_the_scenarios_fields_as_its_signature():
    params = inspect.signature(edsim.simulate).parameters
    assert [p for p in params if p not in ("progress", "unknown")] == FIELDS
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in FIELDS + ["progress"])
    doc = inspect.getdoc(edsim.simulate)
    assert "progress" in doc and "edsim.Scenario" in doc and len(doc.splitlines()) > 10
    assert list(inspect.signature(edsim.Scenario).parameters) == FIELDS
    scenario_doc = inspect.getdoc(edsim.Scenario)
    assert all(f"{name}:" in scenario_doc for name in FIELDS)


def test_simulate_still_refuses_unknown_arguments_by_name():
    with pytest.raises(ConfigError, match=r"unknown simulate\(\) argument config 'sed'; did you mean 'seed'"):
        edsim.simulate(sed=1)
    with pytest.raises(TypeError):
        edsim.simulate({"acks": "1"})                       # keyword arguments only, as before
    with pytest.raises(edsim.FaultError, match="faults=None is not allowed"):
        edsim.simulate(faults=None)


def test_simulate_is_scenario_run():
    kwargs = dict(producer={"acks": "1"}, workload={"messages": 300}, seed=4)
    assert edsim.simulate(**kwargs).history.equals(edsim.Scenario(**kwargs).run().history)


def test_a_misspelt_anomaly_name_lists_the_names_there_are():
    result = edsim.simulate(workload={"messages": 100})
    with pytest.raises(KeyError) as caught:
        result.anomalies["lost_write"]
    message = str(caught.value)
    assert "did you mean 'lost-write'?" in message and "duplicate-processing" in message
    with pytest.raises(KeyError, match="The names there are: lost-write"):
        result.anomaly_cases["nope"]
    plain = dict(result.anomalies)
    assert result.anomalies == plain and repr(result.anomalies) == repr(plain) and str(result.anomalies) == str(plain)
    assert isinstance(result.anomalies, dict) and result.anomalies.get("lost_write") is None
    assert pickle.loads(pickle.dumps(result.anomalies)) == plain


def test_the_anomalies_print_in_a_notebook_as_a_plain_dict():
    pretty = pytest.importorskip("IPython.lib.pretty").pretty
    result = edsim.simulate(workload={"messages": 100})
    assert pretty(result.anomalies) == pretty(dict(result.anomalies))


def test_the_options_reference_is_current_and_complete():
    """docs/options.md is generated from the config tables: it fails here when a setting changed and the file
    was not regenerated (python tools/options_reference.py)."""
    from edsim.configs import BROKER, CONSUMER, PRODUCER, TOPIC
    from edsim.workload import WORKLOAD
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "options_reference.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = (ROOT / "docs" / "options.md").read_text()
    for section, table in (("topic", TOPIC), ("broker", BROKER), ("producer", PRODUCER), ("consumer", CONSUMER),
                           ("workload", WORKLOAD)):
        body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        for name, setting in table.items():
            assert f"| `{name}` |" in body, (section, name)
            assert setting.doc, f"{section} config {name} has no meaning to show"
    assert "| `linger.ms` | `5` | ms, number ≥ 0 |" in text
    assert "| `acks` | `all` |" in text and "| `isolation.level` | `read_uncommitted` | one of" in text


def test_the_options_reference_check_notices_a_stale_file(tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location("options_reference", ROOT / "tools" / "options_reference.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    stale = tmp_path / "options.md"
    stale.write_text(tool.render().replace("`5`", "`6`"))
    monkeypatch.setattr(tool, "TARGET", stale)
    assert tool.main(["--check"]) == 1
    stale.write_text(tool.render())
    assert tool.main(["--check"]) == 0
