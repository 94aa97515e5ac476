"""The experiment panel: each control is one field of a Scenario, "Run" runs it, and the live mode lets a learner
crash the leader *now* and watch what happens to the log.

Everything the panel shows lives in widgets (HTML tables, PNG images), not in an Output area, so that it reaches
the browser in the widget state and a test without a browser can read it. A value the model refuses is shown as
the model's own message and nothing runs.
"""
from __future__ import annotations

import html
import time
import warnings

import ipywidgets as W
import pandas as pd

from .. import faults as F
from ..configs import BROKER, TOPIC, ConfigError, EdsimWarning
from ..engine import fewer_collections
from ..faults import FaultError
from ..lab import Cluster
from ..scenario import Scenario
from ..viz import log_figure, metrics_figure, png, timeline_figure

REFUSED = (ConfigError, FaultError)
DEFAULT_FIELDS = {  # (section, key): the value the control shows when the scenario leaves the key out
    ("producer", "acks"): "all",
    ("producer", "enable.idempotence"): "default",    # not set: Kafka decides from acks and friends
    ("topic", "replication.factor"): 3,
    ("topic", "min.insync.replicas"): 1,
    ("topic", "unclean.leader.election.enable"): False,
    ("producer", "max.in.flight.requests.per.connection"): 5,
    ("consumer", "isolation.level"): "read_uncommitted",
}
FAULT_KINDS = ("crash", "isolate", "pause", "slow", "partition")
# The cleaner's settings (``ExperimentPanel(cleaner=True)``): (section, key) -> (attribute, widget kind, bounds)
CLEANER_FIELDS = {
    ("topic", "cleanup.policy"): ("cleanup_policy", "policy", None),
    ("topic", "segment.ms"): ("segment_ms", "int", (1, 604800000)),
    ("topic", "retention.ms"): ("retention_ms", "int", (-1, 10**12)),
    ("topic", "min.cleanable.dirty.ratio"): ("dirty_ratio", "float", (0.0, 1.0)),
    ("topic", "min.compaction.lag.ms"): ("min_compaction_lag", "int", (0, 10**12)),
    ("topic", "delete.retention.ms"): ("delete_retention", "int", (0, 10**12)),
    ("broker", "log.cleaner.backoff.ms"): ("cleaner_backoff", "int", (1, 10**9)),
    ("broker", "log.retention.check.interval.ms"): ("retention_check", "int", (1, 10**9)),
}
POLICIES = ("delete", "compact", "compact,delete")


def _table(frame: pd.DataFrame, cls: str) -> str:
    return frame.to_html(classes=f"edsim-{cls}", border=0, escape=True)


def _losses_html(result) -> str:
    """Result.losses() under the anomalies: a run can lose records that no anomaly names (a consumer read them
    before an unclean election truncated them), so the panel says what was lost whatever the names say."""
    frame = result.losses()
    title = "<b>What the run lost or left undone</b>"
    if not len(frame):
        return f"<div class='edsim-losses'>{title}: nothing; every acknowledged record is in the final log, " \
               "readable, and processed by every group that processes records</div>"
    shown = frame.assign(partition=frame["partition"].astype(object).where(frame["partition"].notna(), ""),
                         records=frame["records"].astype(object).where(frame["records"].notna(), ""))
    return f"<div class='edsim-losses'>{title}" + _table(shown.set_index("what"), "loss-table") + "</div>"


class ExperimentPanel:
    """A Scenario as controls. ``panel.scenario`` is the Scenario the controls say now; ``panel.result`` the last
    Result shown. ``live=True`` adds the live mode: the run is held at ``live_start`` seconds and advances
    ``step`` seconds per click, and the fault buttons act at that moment for ``fault_duration`` seconds.
    ``cleaner=True`` adds the log cleaner's settings: cleanup.policy, segment.ms, retention.ms,
    min.cleanable.dirty.ratio, min.compaction.lag.ms, delete.retention.ms (topic), log.cleaner.backoff.ms and
    log.retention.check.interval.ms (broker)."""

    def __init__(self, scenario: Scenario | None = None, live: bool = False, live_start: float = 1.0,
                 step: float = 0.5, fault_duration: float = 2.0, cleaner: bool = False):
        self.base = scenario if scenario is not None else Scenario()
        self.live_mode = live
        self.live_start, self.step, self.fault_duration = live_start, step, fault_duration
        self.result = None
        self.live = None
        self.outcome = None
        self.last_run_seconds = None
        self._drawn: set[int] = set()          # the picture tabs drawn for the result shown
        b = self.base
        style = {"description_width": "initial"}
        layout = W.Layout(width="250px")

        def initial(section, key):
            return getattr(b, section).get(key, DEFAULT_FIELDS[(section, key)])

        acks = str(initial("producer", "acks"))
        self.acks = W.Dropdown(options=["0", "1", "all"], value="all" if acks == "-1" else acks,
                               description="acks", style=style, layout=layout)
        self.idempotence = W.Dropdown(options=[("default", "default"), ("true", True), ("false", False)],
                                      value=initial("producer", "enable.idempotence"),
                                      description="enable.idempotence", style=style, layout=layout)
        self.replication_factor = W.BoundedIntText(value=initial("topic", "replication.factor"), min=1, max=9,
                                                   description="replication.factor", style=style, layout=layout)
        self.min_insync = W.BoundedIntText(value=initial("topic", "min.insync.replicas"), min=1, max=9,
                                           description="min.insync.replicas", style=style, layout=layout)
        self.unclean = W.Checkbox(value=bool(initial("topic", "unclean.leader.election.enable")),
                                  description="unclean.leader.election.enable", style=style, indent=False)
        self.max_in_flight = W.BoundedIntText(value=initial("producer", "max.in.flight.requests.per.connection"),
                                              min=1, max=10, description="max.in.flight.requests.per.connection",
                                              style=style, layout=W.Layout(width="320px"))
        self.isolation = W.Dropdown(options=["read_uncommitted", "read_committed"],
                                    value=initial("consumer", "isolation.level"), description="isolation.level",
                                    style=style, layout=layout)
        self.seed = W.IntText(value=b.seed, description="seed", style=style, layout=W.Layout(width="150px"))
        # control -> (section, key): the one Scenario field it sets
        self.bindings = {self.acks: ("producer", "acks"), self.idempotence: ("producer", "enable.idempotence"),
                         self.replication_factor: ("topic", "replication.factor"),
                         self.min_insync: ("topic", "min.insync.replicas"),
                         self.unclean: ("topic", "unclean.leader.election.enable"),
                         self.max_in_flight: ("producer", "max.in.flight.requests.per.connection"),
                         self.isolation: ("consumer", "isolation.level")}
        cleaner_rows = []
        if cleaner:
            controls = []
            for (section, key), (attribute, kind, bounds) in CLEANER_FIELDS.items():
                value = getattr(b, section).get(key, (TOPIC if section == "topic" else BROKER)[key].default)
                wide = W.Layout(width="320px")
                if kind == "policy":
                    value = value if isinstance(value, str) else ",".join(value)
                    control = W.Dropdown(options=POLICIES, value=value, description=key, style=style, layout=wide)
                elif kind == "float":
                    control = W.BoundedFloatText(value=value, min=bounds[0], max=bounds[1], step=0.05,
                                                 description=key, style=style, layout=wide)
                else:
                    control = W.BoundedIntText(value=value, min=bounds[0], max=bounds[1], step=1000,
                                               description=key, style=style, layout=wide)
                setattr(self, attribute, control)
                self.bindings[control] = (section, key)
                controls.append(control)
            cleaner_rows = [W.HBox(controls[i:i + 3]) for i in range(0, len(controls), 3)]
        self._initial = {c: c.value for c in list(self.bindings) + [self.seed]}

        # the fault builder
        self.faults = list(b.faults)
        targets = ["leader", "followers", "controller"] + list(range(1, b.brokers + 1)) + process_targets(b)
        self.fault_kind = W.Dropdown(options=FAULT_KINDS, value="crash", description="fault", style=style,
                                     layout=W.Layout(width="170px"))
        self.fault_target = W.Dropdown(options=targets, value="leader", description="target", style=style,
                                       layout=W.Layout(width="170px"))
        self.fault_at = W.BoundedFloatText(value=1.0, min=0, max=1e6, step=0.5, description="at (s)", style=style,
                                           layout=W.Layout(width="130px"))
        self.fault_duration_box = W.BoundedFloatText(value=2.0, min=0, max=1e6, step=0.5,
                                                     description="for (s, 0 = for good)", style=style,
                                                     layout=W.Layout(width="190px"))
        self.add_fault = W.Button(description="add fault", icon="plus")
        self.clear_faults = W.Button(description="clear faults", icon="trash")
        self.fault_list = W.HTML()

        # running and showing
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.progress = W.FloatProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="200px",
                                                                                               visibility="hidden"))
        self.status = W.HTML()
        self.message = W.HTML()
        self.code = W.HTML()
        self.summary = W.HTML()
        self.anomalies = W.HTML()
        self.log_image = W.Image(format="png")
        self.timeline_image = W.Image(format="png")
        self.metrics_image = W.Image(format="png")
        self.pictures = W.Tab(children=[self.log_image, self.timeline_image, self.metrics_image])
        for i, name in enumerate(["replica logs", "timeline", "metrics"]):
            self.pictures.set_title(i, name)
        self.pictures.observe(self._draw_tab, names="selected_index")

        for control in list(self.bindings) + [self.seed]:
            control.observe(self._changed, names="value")
        self.run_button.on_click(self._run_clicked)
        self.add_fault.on_click(self._add_fault_clicked)
        self.clear_faults.on_click(self._clear_faults_clicked)

        settings = W.VBox([W.HBox([self.acks, self.idempotence, self.seed]),
                           W.HBox([self.replication_factor, self.min_insync, self.unclean]),
                           W.HBox([self.max_in_flight, self.isolation])] + cleaner_rows)
        builder = W.VBox([W.HBox([self.fault_kind, self.fault_target, self.fault_at, self.fault_duration_box,
                                  self.add_fault, self.clear_faults]), self.fault_list])
        parts = [settings, builder, W.HBox([self.run_button, self.progress, self.status]), self.message]

        if live:
            self.step_button = W.Button(description=f"step +{step:g} s", icon="forward")
            self.crash_button = W.Button(description="crash leader", button_style="danger", icon="bolt")
            self.isolate_button = W.Button(description="isolate leader", button_style="warning", icon="cut")
            self.pause_button = W.Button(description="pause follower", button_style="warning", icon="pause")
            self.heal_button = W.Button(description="heal all", button_style="success", icon="medkit")
            self.finish_button = W.Button(description="finish run", icon="flag-checkered")
            self.reset_button = W.Button(description="restart", icon="undo")
            self.clock = W.HTML()
            self.now_image = W.Image(format="png")
            self.end_image = W.Image(format="png")
            self.step_button.on_click(self._step_clicked)
            self.crash_button.on_click(lambda _b: self._inject("crash", "leader"))
            self.isolate_button.on_click(lambda _b: self._inject("isolate", "leader"))
            self.pause_button.on_click(lambda _b: self._inject("pause", "follower"))
            self.heal_button.on_click(self._heal_clicked)
            self.finish_button.on_click(self._finish_clicked)
            self.reset_button.on_click(lambda _b: self._restart_live())
            self.live_buttons = [self.step_button, self.crash_button, self.isolate_button, self.pause_button,
                                 self.heal_button, self.finish_button]
            parts += [W.HTML("<b>Live</b>: the run is held at the time shown; each button acts <i>now</i>."),
                      W.HBox([self.clock, self.reset_button]),
                      W.HBox(self.live_buttons),
                      self.anomalies, W.HTML("<b>The replica logs now</b>"), self.now_image,
                      W.HTML("<b>At the end, if nothing else happens</b> (the run played out from here)"),
                      self.end_image, W.HTML("<b>Summary of that ending</b>"), self.summary, self.code]
        else:
            parts += [self.anomalies, self.summary, self.pictures, self.code]
        self.widget = W.VBox(parts)
        self._show_faults()
        self._show_code()
        if live:
            self._restart_live()

    # ---- the scenario the controls say --------------------------------------------------------------------
    @property
    def scenario(self) -> Scenario:
        """The Scenario the controls describe (raises the model's ConfigError / FaultError if it refuses one)."""
        changes = {}
        for control, (section, key) in self.bindings.items():
            current = getattr(self.base, section)
            if key in current or control.value != self._initial[control]:
                if control.value == "default":
                    changes[section] = {k: v for k, v in changes.get(section, dict(current)).items() if k != key}
                else:
                    changes.setdefault(section, dict(current))[key] = control.value
        scenario = self.base.replace(**changes, faults=list(self.faults), seed=self.seed.value)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EdsimWarning)
            Cluster(scenario.brokers, 0, scenario.broker).create_topic(scenario.topic_name(), scenario.topic_config())
        for w in caught:
            raise ConfigError(f"{w.message} The panel does not run it: choose a value Kafka does not have to "
                              "change for you.")
        return scenario

    def _checked(self) -> Scenario | None:
        """The current scenario, or None after showing why the model refuses it."""
        try:
            scenario = self.scenario
        except REFUSED as error:
            self.message.value = ("<div style='color:#b00020'><b>Not run:</b> " + html.escape(str(error))
                                  + "</div>")
            self.code.value = ""
            return None
        self.message.value = ""
        return scenario

    def _show_code(self, scenario=None):
        scenario = scenario or self._checked()
        if scenario is not None:
            self.code.value = ("<details><summary>the same run in code</summary><pre>" +
                               html.escape(scenario.to_code()) + "</pre></details>")

    def _changed(self, _change):
        scenario = self._checked()
        if scenario is not None:
            self._show_code(scenario)
        if self.live_mode:
            self._restart_live(scenario)

    # ---- the fault builder --------------------------------------------------------------------------------
    def _add_fault_clicked(self, _button=None):
        kind, target = self.fault_kind.value, self.fault_target.value
        at, duration = self.fault_at.value, self.fault_duration_box.value or None
        try:
            if kind == "crash":
                fault = F.crash(target, at=at, restart_after=duration)
            elif kind == "isolate":
                fault = F.isolate(target, at=at, heal_after=duration)
            elif kind == "pause":
                fault = F.pause(target, at=at, duration=duration)
            elif kind == "slow":
                fault = F.slow(target, at=at, factor=10, duration=duration)
            else:
                other = ["followers"] if target == "leader" else ["leader"]
                fault = F.partition([target], other, at=at, heal_after=duration)
        except FaultError as error:
            self.message.value = ("<div style='color:#b00020'><b>Not added:</b> " + html.escape(str(error))
                                  + "</div>")
            return
        self.faults.append(fault)
        self._show_faults()
        self._changed(None)

    def _clear_faults_clicked(self, _button=None):
        self.faults = []
        self._show_faults()
        self._changed(None)

    def _show_faults(self):
        items = "".join(f"<li><code>{html.escape(repr(f))}</code></li>" for f in self.faults)
        self.fault_list.value = f"<b>Scheduled faults</b><ol>{items}</ol>" if items else \
            "<b>Scheduled faults</b>: none"

    # ---- running ------------------------------------------------------------------------------------------
    def _progress(self, phase, t):
        self.status.value = f"running: {html.escape(phase)}, t = {t:.1f} s"
        order = ["workload", "drain", "heal", "catch-up", "done"]
        self.progress.value = (order.index(phase) + 1) / len(order) if phase in order else self.progress.value

    @fewer_collections()
    def run(self):
        """What "Run" does: check the scenario, run it, show summary, anomalies and the replica logs."""
        scenario = self._checked()
        if scenario is None:
            return None
        start = time.perf_counter()
        self.progress.layout.visibility = "visible"
        self.progress.value = 0
        result = scenario.run(progress=self._progress)
        self.progress.layout.visibility = "hidden"
        self._show_result(result, image=self.end_image if self.live_mode else None)
        self.last_run_seconds = time.perf_counter() - start
        self.status.value = f"done: {result.duration:.1f} simulated s in {self.last_run_seconds:.2f} s"
        return result

    def _run_clicked(self, _button=None):
        self.run()

    def _show_result(self, result, image=None):
        self.result = result
        self.summary.value = _table(result.summary(), "summary")
        self.anomalies.value = self._anomaly_table(result)
        self._drawn = set()
        if image is None:
            self.timeline_image.value = b""
            self.metrics_image.value = b""
            self.pictures.selected_index = 0
            self._draw_tab()
        else:
            image.value = png(log_figure(result.truth.snapshot(), result.history))

    @staticmethod
    def _anomaly_table(result) -> str:
        rows = []
        for name, count in result.anomalies.items():
            if count:
                cases = result.anomaly_cases.get(name)
                first = cases["evidence"].iloc[0] if cases is not None and len(cases) and "evidence" in cases \
                    else ""
                rows.append({"anomaly": name, "cases": count, "first case": first})
        if not rows:
            found = "<b>Anomalies</b> (what clients saw, by Jepsen's names): none found"
        else:
            frame = pd.DataFrame(rows).set_index("anomaly")
            found = "<b>Anomalies</b> (what clients saw, by Jepsen's names)" + _table(frame, "anomaly-table")
        return "<div class='edsim-anomalies'>" + found + _losses_html(result) + "</div>"

    def _draw_tab(self, _change=None):
        """Draw the picture of the selected tab, once per result (the timeline and metrics only when asked)."""
        if self.result is None:
            return
        i = self.pictures.selected_index or 0
        if i in self._drawn:
            return
        self._drawn.add(i)
        if i == 0:
            self.log_image.value = png(self.result.plot.log())
        elif i == 1:
            self.timeline_image.value = png(timeline_figure(self.result))
        else:
            self.metrics_image.value = png(metrics_figure(self.result))

    # ---- live mode ----------------------------------------------------------------------------------------
    def _restart_live(self, scenario=None):
        scenario = scenario or self._checked()
        if scenario is None:
            self.live = None
            self.clock.value = "<b>not running</b>: change the setting the message names"
            return
        self.live = scenario.start()
        if self.live_start > 0:
            self.live.advance(self.live_start)
        self.outcome = None
        self.summary.value = ""
        self.anomalies.value = "<div class='edsim-anomalies'><b>Anomalies</b>: press a button to find out</div>"
        self.end_image.value = b""
        for button in self.live_buttons:
            button.disabled = False
        self._draw_now()

    def _draw_now(self):
        live = self.live
        self.clock.value = f"<b>t = {live.now:.3f} s</b> (simulated)"
        self.now_image.value = png(log_figure(live.truth.snapshot(), live.history))

    def _after_action(self):
        """Advance one step, redraw the logs, and show how the run would end from here."""
        if self.live is None:
            return
        self.live.advance(self.step)
        self._draw_now()
        self.outcome = self.live.outcome()
        self._show_result(self.outcome, image=self.end_image)

    def _inject(self, kind, target):
        if self.live is None or self.live.finished:
            return
        if target == "follower":
            followers = self.live.followers()
            if not followers:
                self.message.value = "<div style='color:#b00020'>no follower to pause</div>"
                return
            target = followers[0]
        try:
            fault = self.live.inject(kind, target, duration=self.fault_duration)
        except REFUSED as error:
            self.message.value = ("<div style='color:#b00020'><b>Not injected:</b> " + html.escape(str(error))
                                  + "</div>")
            return
        self.message.value = f"injected <code>{html.escape(repr(fault))}</code>"
        self._after_action()

    def _step_clicked(self, _button=None):
        if self.live is not None and not self.live.finished:
            self._after_action()

    def _heal_clicked(self, _button=None):
        if self.live is not None and not self.live.finished:
            self.live.heal_all()
            self.message.value = "healed every fault that can heal"
            self._after_action()

    def _finish_clicked(self, _button=None):
        if self.live is None or self.live.finished:
            return
        result = self.live.finish()
        self._draw_now()
        self._show_result(result, image=self.end_image)
        for button in self.live_buttons:
            button.disabled = True

    def _repr_mimebundle_(self, **kwargs):
        """A notebook shows the panel's widget when the panel is a cell's value."""
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self):
        return f"<ExperimentPanel live={self.live_mode}: {self.base.to_code()}>"


def process_targets(scenario) -> list[str]:
    """What the scenario's services can be hit by name (the run's registry says the same): every instance, then
    every service of several instances (all of them at once)."""
    names = scenario.names()
    instances = names.names("instance")
    services = [n for n in names.names("service") if len(names.get(n).names(n)) > 1]
    return instances + services
