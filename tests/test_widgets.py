"""The experiment panel without a browser: set controls, click buttons, check the Scenario and the Result.

ipywidgets catches an exception raised in a button's handler and only logs it when no IPython is running
(``CallbackDispatcher.__call__``), so a broken handler would pass unnoticed: the ``raising_callbacks`` fixture
makes the handlers' exceptions propagate, and the first test proves that it does."""
import html

import ipywidgets as W
import numpy as np
import pytest
from ipywidgets.widgets.widget import CallbackDispatcher

import edsim
from edsim import faults
from edsim.live import LiveRun
from edsim.widgets import ExperimentPanel

CUT = [faults.partition(["leader"], ["followers"], at=0.5, heal_after=5)]


def _raise_from_callbacks(self, *args, **kwargs):
    value = None
    for callback in self.callbacks:
        local = callback(*args, **kwargs)
        value = local if local is not None else value
    return value


@pytest.fixture(autouse=True)
def raising_callbacks(monkeypatch):
    """Exceptions in widget callbacks (``on_click``, ``on_submit``...) fail the test instead of being logged."""
    monkeypatch.setattr(CallbackDispatcher, "__call__", _raise_from_callbacks)


def test_a_raising_click_handler_fails_the_test():
    button = W.Button()

    def broken(_b):
        raise RuntimeError("handler bug")

    button.on_click(broken)
    with pytest.raises(RuntimeError, match="handler bug"):
        button.click()


def test_controls_start_from_the_scenario():
    scenario = edsim.Scenario(producer={"acks": "1"}, topic={"replication.factor": 2}, seed=4, faults=CUT)
    panel = ExperimentPanel(scenario)
    assert panel.acks.value == "1" and panel.replication_factor.value == 2 and panel.seed.value == 4
    assert panel.scenario == scenario
    assert "faults.partition" in html.unescape(panel.fault_list.value)


def test_each_control_sets_one_scenario_field():
    panel = ExperimentPanel(edsim.Scenario(seed=1))
    panel.acks.value = "1"
    panel.idempotence.value = False
    panel.replication_factor.value = 2
    panel.min_insync.value = 2
    panel.unclean.value = True
    panel.max_in_flight.value = 3
    panel.isolation.value = "read_committed"
    panel.seed.value = 9
    s = panel.scenario
    assert s.producer == {"acks": "1", "enable.idempotence": False, "max.in.flight.requests.per.connection": 3}
    assert s.topic == {"replication.factor": 2, "min.insync.replicas": 2, "unclean.leader.election.enable": True}
    assert s.consumer == {"isolation.level": "read_committed"}
    assert s.seed == 9
    code = html.unescape(panel.code.value)
    assert "'acks': '1'" in code and "seed=9" in code
    panel.idempotence.value = "default"                 # the key leaves the scenario again
    assert "enable.idempotence" not in panel.scenario.producer


def test_run_shows_summary_anomalies_and_the_log_picture():
    panel = ExperimentPanel(edsim.Scenario(workload={"messages": 500}, seed=1))
    panel.run_button.click()
    assert panel.result is not None and panel.result.seed == 1
    assert "records sent" in panel.summary.value and ">500<" in panel.summary.value
    assert "none found" in panel.anomalies.value
    assert bytes(panel.log_image.value).startswith(b"\x89PNG")
    assert panel.message.value == ""
    assert panel.progress.value == 1.0                  # the progress bar went through every phase
    panel.pictures.selected_index = 1                   # the timeline is drawn when its tab is opened
    assert bytes(panel.timeline_image.value).startswith(b"\x89PNG")


def test_fault_builder_schedules_faults_and_run_finds_the_loss():
    panel = ExperimentPanel(edsim.Scenario(seed=1, faults=CUT))
    panel.acks.value = "1"
    panel.fault_kind.value, panel.fault_target.value = "crash", "leader"
    panel.fault_at.value, panel.fault_duration_box.value = 1.0, 2.0
    panel.add_fault.click()
    assert panel.scenario.faults == CUT + [faults.crash("leader", at=1.0, restart_after=2.0)]
    assert "faults.crash('leader', at=1.0, restart_after=2.0)" in html.unescape(panel.fault_list.value)
    panel.run_button.click()
    assert panel.result.anomalies["lost-write"] == 507
    assert "lost-write" in panel.anomalies.value and ">507<" in panel.anomalies.value
    panel.clear_faults.click()
    assert panel.scenario.faults == []


def test_a_refused_value_shows_the_model_message_and_nothing_runs():
    panel = ExperimentPanel(edsim.Scenario(workload={"messages": 200}, seed=1))
    panel.replication_factor.value = 2
    panel.min_insync.value = 3                          # above the replication factor
    panel.run_button.click()
    assert panel.result is None
    assert "Not run" in panel.message.value and "min.insync.replicas=3" in panel.message.value
    assert "Traceback" not in panel.message.value
    panel.replication_factor.value = 4                  # more replicas than brokers: the model's ConfigError
    assert "replication.factor=4 is not allowed" in panel.message.value
    with pytest.raises(edsim.ConfigError):
        panel.scenario
    panel.replication_factor.value = 3
    assert panel.message.value == ""
    panel.run_button.click()
    assert panel.result is not None


def test_idempotence_with_acks_1_is_refused_as_kafka_refuses_it():
    panel = ExperimentPanel(edsim.Scenario(seed=1))
    panel.acks.value = "1"
    panel.idempotence.value = True
    panel.run_button.click()
    assert panel.result is None and "enable.idempotence=true is not allowed" in panel.message.value


def test_a_bad_fault_is_not_added():
    panel = ExperimentPanel(edsim.Scenario(seed=1))
    panel.fault_kind.value = "pause"
    panel.fault_duration_box.value = 0                  # a pause needs a duration
    panel.add_fault.click()
    assert panel.faults == [] and "Not added" in panel.message.value


# ---- live mode ---------------------------------------------------------------------------------------------
def test_live_crash_leader_with_followers_cut_off_loses_acknowledged_writes():
    """The issue's done-when, without a browser: acks=1, "crash leader" now, lost-write in the table."""
    panel = ExperimentPanel(edsim.Scenario(faults=CUT, seed=1), live=True)
    assert isinstance(panel.live, LiveRun) and panel.live.now == pytest.approx(1.0)
    before = panel.now_image.value
    panel.acks.value = "1"                              # a new setting restarts the live run
    assert panel.live.scenario.producer == {"acks": "1"} and panel.live.now == pytest.approx(1.0)
    panel.crash_button.click()
    assert panel.live.injected == [faults.crash("leader", at=1.0, restart_after=2.0)]
    assert panel.live.now == pytest.approx(1.5)
    assert panel.outcome.anomalies["lost-write"] == 507
    assert "lost-write" in panel.anomalies.value and ">507<" in panel.anomalies.value
    assert panel.now_image.value != before and bytes(panel.end_image.value).startswith(b"\x89PNG")
    assert "t = 1.500 s" in panel.clock.value
    # watch it happen: the old leader comes back, the cut heals, its unreplicated records are truncated
    for _ in range(9):
        panel.step_button.click()
    truth = panel.live.truth.snapshot()
    assert {r.log_end for r in truth.replicas} != {819}
    panel.finish_button.click()
    assert panel.result.anomalies["lost-write"] == 507
    assert all(b.disabled for b in panel.live_buttons)


def test_live_with_acks_all_loses_nothing():
    panel = ExperimentPanel(edsim.Scenario(faults=CUT, seed=1, workload={"messages": 1500}), live=True)
    panel.crash_button.click()
    assert panel.outcome.anomalies["lost-write"] == 0
    assert "none found" in panel.anomalies.value


def test_live_isolate_pause_and_heal_act_now():
    panel = ExperimentPanel(edsim.Scenario(seed=1, workload={"messages": 1500}), live=True, live_start=0.5)
    leader = panel.live.leader()
    panel.isolate_button.click()
    assert panel.live.injected[-1] == faults.isolate(leader, at=0.5, heal_after=2.0) or \
        panel.live.injected[-1] == faults.isolate("leader", at=0.5, heal_after=2.0)
    follower = panel.live.followers()[0]
    panel.pause_button.click()
    assert panel.live.injected[-1].kind == "pause" and panel.live.injected[-1].targets == (follower,)
    panel.heal_button.click()
    assert panel.live._run.nemesis.active == []
    assert ("heal", None) in panel.live.actions


def test_live_run_refused_values_show_the_message():
    panel = ExperimentPanel(edsim.Scenario(seed=1), live=True)
    panel.replication_factor.value = 5
    assert panel.live is None and "replication.factor=5 is not allowed" in panel.message.value
    panel.crash_button.click()                          # nothing to act on: does nothing, raises nothing
    panel.replication_factor.value = 3
    assert panel.live is not None


# ---- the LiveRun API ---------------------------------------------------------------------------------------
def test_a_live_run_only_advanced_is_the_same_run():
    scenario = edsim.Scenario(faults=CUT, workload={"messages": 800}, seed=3)
    live = scenario.start()
    live.advance(0.7).advance(1.1)
    import pandas as pd
    pd.testing.assert_frame_equal(live.finish().history, scenario.run().history)


def test_a_crash_injected_live_equals_the_same_crash_scheduled():
    scenario = edsim.Scenario(producer={"acks": "1"}, faults=CUT, seed=1)
    live = scenario.start()
    live.advance(1.0)
    live.inject("crash", "leader", duration=2.0)
    outcome = live.outcome()                            # a replay, finished; the live run goes on
    assert not live.finished and live.now == pytest.approx(1.0)
    result = live.finish()
    scheduled = scenario.replace(faults=CUT + [faults.crash("leader", at=1.0, restart_after=2.0)]).run()
    import pandas as pd
    pd.testing.assert_frame_equal(result.history, scheduled.history)
    pd.testing.assert_frame_equal(outcome.history, result.history)
    assert result.scenario.faults[-1] == faults.crash("leader", at=1.0, restart_after=2.0)


def test_live_run_errors_name_the_value():
    live = edsim.Scenario(workload={"messages": 100}, seed=1).start()
    with pytest.raises(edsim.ConfigError, match="seconds=-1 is not allowed"):
        live.advance(-1)
    with pytest.raises(edsim.FaultError, match="fault kind 'drop' is not allowed live"):
        live.inject("drop", "leader")
    with pytest.raises(edsim.FaultError, match="target='leaderr' is not allowed; did you mean 'leader'"):
        live.inject("crash", "leaderr")
    live.advance(1.0)
    with pytest.raises(edsim.FaultError, match="in the past"):
        live.inject(faults.crash("leader", at=0.5))
    live.finish()
    with pytest.raises(edsim.ConfigError, match="has finished"):
        live.advance(1)


def test_run_in_live_mode_plays_the_scheduled_faults_and_shows_the_end():
    panel = ExperimentPanel(edsim.Scenario(faults=CUT, seed=1, workload={"messages": 1000}), live=True)
    panel.run_button.click()
    assert panel.result.scenario.faults == CUT
    assert bytes(panel.end_image.value).startswith(b"\x89PNG") and "records sent" in panel.summary.value


def test_anomaly_table_says_what_the_run_lost_even_when_no_anomaly_names_it():
    """RF=1 with the broker down at the end: no anomaly may fire, but the panel says the acknowledged
    records are unreadable (issue 16 item 7), and a safe run says nothing was lost."""
    panel = ExperimentPanel(edsim.Scenario(topic={"replication.factor": 1}, workload={"messages": 1500},
                                           faults=[faults.crash("leader", at=0.5)], seed=1))
    panel.run_button.click()
    text = html.unescape(panel.anomalies.value)
    assert "What the run lost or left undone" in text and "acknowledged, unreadable (not lost)" in text
    assert "nothing;" not in text
    panel = ExperimentPanel(edsim.Scenario(workload={"messages": 500}, seed=1))
    panel.run_button.click()
    assert "What the run lost or left undone</b>: nothing;" in panel.anomalies.value


def test_the_cleaner_controls_set_the_topic_and_broker_settings():
    compacted = edsim.Scenario(topic={"cleanup.policy": "compact", "segment.ms": 1000},
                               workload={"messages": 2000, "rate": 200, "keys": 10}, seed=1)
    panel = ExperimentPanel(compacted, cleaner=True)
    assert panel.scenario == compacted                  # the controls start from the scenario, change nothing
    assert panel.retention_ms.value == 604800000 and panel.cleaner_backoff.value == 15000   # Kafka's defaults
    panel.dirty_ratio.value = 0.1
    panel.cleaner_backoff.value = 1000
    panel.delete_retention.value = 5000
    s = panel.scenario
    assert s.topic == {"cleanup.policy": "compact", "segment.ms": 1000, "min.cleanable.dirty.ratio": 0.1,
                       "delete.retention.ms": 5000}
    assert s.broker == {"log.cleaner.backoff.ms": 1000}
    panel.run()
    assert (panel.result.history["f"] == "compact").any()
    assert not hasattr(ExperimentPanel(compacted), "dirty_ratio")    # only when asked for
