"""python -m edsim: run a scenario file, save its history, sweep seeds, check a saved history; exit 0 clean,
1 anomalies found, 2 bad input."""
import io
import subprocess
import sys
from pathlib import Path

import pytest

import edsim
from edsim import checker, faults
from edsim.cli import main, parse_seeds
from edsim.history_file import load_history, save_history

ROOT = Path(__file__).resolve().parent.parent
RISKY = edsim.Scenario(producer={"acks": "1"}, workload={"consumers": 2, "commit": "after-process"},
                       faults=[faults.partition(["leader"], ["followers"], at=0.5, heal_after=5),
                               faults.crash("leader", at=1.0, restart_after=2.0)], seed=1)


def run(*argv):
    out = io.StringIO()
    return main(list(map(str, argv)), out=out), out.getvalue()


def test_run_prints_the_summary_and_anomalies_and_exits_1_when_it_finds_some(tmp_path, capsys):
    path = RISKY.save(tmp_path / "risky.yaml")
    code, out = run("run", path, "--history", tmp_path / "h.csv")
    expected = RISKY.run()
    assert code == 1
    assert "records sent" in out and f"lost-write: {expected.anomalies['lost-write']}" in out
    assert capsys.readouterr().err == ""                      # no progress unless asked
    saved = load_history(tmp_path / "h.csv")
    assert len(saved) == len(expected.history)


def test_a_clean_run_exits_0(tmp_path):
    path = edsim.Scenario(workload={"messages": 200}).save(tmp_path / "clean.json")
    code, out = run("run", path)
    assert code == 0 and "anomalies: none" in out


def test_a_saved_history_is_checked_as_the_run_was(tmp_path):
    result = RISKY.run()
    save_history(result.history, tmp_path / "h.csv")
    loaded = load_history(tmp_path / "h.csv")
    assert list(loaded.columns) == list(result.history.columns)
    report = checker.check(loaded)
    assert report.anomalies == result.anomalies and report.anomalies["lost-write"] > 0
    for name, cases in result.anomaly_cases.items():
        assert list(report.cases[name]["value" if "value" in cases else "values"]) == \
            list(cases["value" if "value" in cases else "values"]), name
    for column in ("key", "value", "partition", "offset", "op", "txn"):
        assert (loaded[column].to_numpy() == result.history[column].to_numpy()).all(), column
    assert (loaded["time"].to_numpy() == result.history["time"].to_numpy()).all()    # floats exactly
    assert (loaded["error"] == result.history["error"].astype(str)).all()
    code, out = run("check", tmp_path / "h.csv")
    assert code == 1 and f"lost-write: {result.anomalies['lost-write']}" in out


def test_check_refuses_a_file_without_the_checkers_columns(tmp_path):
    result = edsim.simulate(workload={"messages": 50})
    result.history.drop(columns=["offset"]).to_csv(tmp_path / "h.csv", index=False)
    code, _ = run("check", tmp_path / "h.csv")
    assert code == 2


def test_a_seed_sweep_shows_progress_on_stderr(tmp_path, capsys):
    path = edsim.Scenario(workload={"messages": 100}).save(tmp_path / "s.yaml")
    code, out = run("run", path, "--seeds", "0..2")
    assert code == 0 and "3 runs; no anomalies in any run" in out
    err = capsys.readouterr().err
    assert "3/3 runs" in err and "100%" in err


@pytest.mark.parametrize("argv", [
    ["run", "missing.yaml"],
    ["run", "{tmp}/s.yaml", "--seeds", "a..b"],
    ["run", "{tmp}/s.yaml", "--seeds", "0..3", "--history", "{tmp}/h.csv"],
    ["run", "{tmp}/s.yaml", "--history", "{tmp}/h.txt"],
    ["run", "{tmp}/bad.yaml"],
    ["check", "{tmp}/nothing.csv"],
])
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, argv):
    edsim.Scenario(workload={"messages": 50}).save(tmp_path / "s.yaml")
    (tmp_path / "bad.yaml").write_text("producer: {acks: 2}")
    code, _ = run(*[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert capsys.readouterr().err.startswith("edsim: ")


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("pandas")
    try:
        import pyarrow  # noqa: F401
        pytest.skip("pyarrow is installed")
    except ImportError:
        pass
    path = edsim.Scenario(workload={"messages": 50}).save(tmp_path / "s.yaml")
    code, _ = run("run", path, "--history", tmp_path / "h.parquet")
    assert code == 2 and "needs pyarrow" in capsys.readouterr().err


def test_seeds_are_ranges_lists_or_one():
    assert parse_seeds("0..3") == [0, 1, 2, 3] and parse_seeds("7") == [7] and parse_seeds("1,4") == [1, 4]


def test_python_dash_m_edsim_is_the_command(tmp_path):
    path = edsim.Scenario(workload={"messages": 50}).save(tmp_path / "s.json")
    done = subprocess.run([sys.executable, "-m", "edsim", "run", str(path)], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "anomalies: none" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "edsim", "frobnicate"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2


def test_seed_overrides_the_files_seed(tmp_path):
    path = RISKY.save(tmp_path / "risky.yaml")
    _, out = run("run", path, "--seed", 5)
    assert f"lost-write: {RISKY.run(seed=5).anomalies['lost-write']}" in out or "anomalies: none" in out
    expected = RISKY.run(seed=5).summary().to_string()
    assert out.startswith(expected)
