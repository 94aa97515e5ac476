"""Progress, asked for explicitly: a callback, or a text bar on stderr; never a change in the run, never output
unless asked. The model and scenario layers never import widgets or viz."""
import io
import subprocess
import sys

import pytest

import edsim
from edsim import ConfigError, faults
from edsim.progress import RunBar, TextBar, run_fraction

SCENARIO = edsim.Scenario(workload={"messages": 600, "rate": 100}, producer={"acks": "1"},
                          faults=[faults.crash("leader", at=1.0, restart_after=2.0)], seed=2)


def test_progress_does_not_change_the_history():
    heard = []
    plain = SCENARIO.run()
    watched = SCENARIO.run(progress=lambda phase, t: heard.append((phase, t)))
    assert watched.history.equals(plain.history)
    assert watched.anomalies == plain.anomalies
    assert heard[0][0] == "workload" and heard[-1][0] == "done" and len(heard) >= 4


def test_simulate_takes_progress_and_true_draws_a_bar_on_stderr(capsys):
    result = edsim.simulate(workload={"messages": 600, "rate": 100}, seed=2, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "100%" in captured.err and "done" in captured.err and captured.err.endswith("\n")
    assert result.history.equals(edsim.simulate(workload={"messages": 600, "rate": 100}, seed=2).history)


def test_nothing_is_printed_unless_asked(capsys):
    edsim.simulate(workload={"messages": 100})
    edsim.sweep(edsim.Scenario(workload={"messages": 100}), seeds=range(2))
    assert capsys.readouterr() == ("", "")


def test_sweep_reports_runs_done():
    heard = []
    table = edsim.sweep(edsim.Scenario(workload={"messages": 100}), seeds=range(3),
                        progress=lambda done, total: heard.append((done, total)))
    assert heard == [(0, 3), (1, 3), (2, 3), (3, 3)] and len(table) == 3


def test_a_bad_progress_is_refused():
    with pytest.raises(ConfigError, match="progress='yes' is not allowed"):
        edsim.simulate(progress="yes")


def test_the_bar_moves_forward_through_the_phases():
    fractions = [run_fraction("workload", t, 6.0) for t in (0, 3, 6, 9)] + \
        [run_fraction(p, 10, 6.0) for p in ("drain", "heal", "catch-up", "done")]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1
    stream = io.StringIO()
    bar = RunBar(SCENARIO, stream=stream)
    bar("workload", 3.0)
    bar("done", 12.0)
    assert stream.getvalue().startswith("\rrun [") and stream.getvalue().rstrip(" \n").endswith("done, t = 12.0 s")
    assert stream.getvalue().endswith("\n")


def test_text_bar_draws_once_per_change():
    stream = io.StringIO()
    bar = TextBar(stream=stream)
    bar.update(0.5, "x")
    bar.update(0.5, "x")
    assert stream.getvalue().count("\r") == 1


def test_the_model_and_scenario_layers_import_no_widgets_or_viz():
    code = ("import sys, edsim, edsim.cli, edsim.scenario_file, edsim.progress, edsim.history_file; "
            "edsim.simulate(workload={'messages': 50}, progress=lambda p, t: None); "
            "print(sorted(m for m in sys.modules if m.startswith(('edsim.widgets', 'edsim.viz', 'ipywidgets'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_notebook_bar_follows_a_run_and_a_sweep():
    from edsim.widgets import ProgressBar
    bar = ProgressBar(SCENARIO)
    bar.shown = True                              # no display outside a notebook
    SCENARIO.run(progress=bar)
    assert bar.bar.value == 1.0 and bar.label.value.startswith("done")
    bar = ProgressBar()
    bar.shown = True
    edsim.sweep(edsim.Scenario(workload={"messages": 50}), seeds=range(2), progress=bar)
    assert bar.bar.value == 1.0 and bar.label.value == "2/2 runs"
