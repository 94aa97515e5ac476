"""Scenario (plain data), ``simulate`` and Result: one experiment, run from a seed, with everything it left.

A run has three phases: the workload with its faults; then every fault that can heal is healed (a broker crashed
without restart stays down); then a fresh consumer reads every partition from the start to its end, so that a
record nobody read is lost, not late (as Jepsen's Kafka test ends with a final read).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd

from . import checker
from .clients import producer_config
from .configs import BROKER, CONSUMER, TOPIC, Config, ConfigError, unknown_key
from .faults import Fault, FaultError
from .faults.nemesis import check_target
from .lab import Cluster
from .engine import fewer_collections
from .metrics import Sampler, cluster_frame
from .truth import Truth
from .workload import OUTPUT, Workload, pipeline_producer_settings, producer_settings, workload_config

SECTIONS = ("topic", "producer", "consumer", "broker", "workload")


@dataclass
class Scenario:
    """Everything that defines a run; ``Scenario(**kw).run()`` is ``edsim.simulate(**kw)``."""

    brokers: int = 3
    topic: dict = field(default_factory=dict)
    producer: dict = field(default_factory=dict)
    consumer: dict = field(default_factory=dict)
    broker: dict = field(default_factory=dict)
    workload: dict = field(default_factory=dict)
    faults: list = field(default_factory=list)
    seed: int = 0

    def __post_init__(self):
        for name in SECTIONS:
            value = getattr(self, name)
            if value is None:
                setattr(self, name, {})
            elif not isinstance(value, dict):
                raise ConfigError(f"{name}={value!r} is not allowed: {name} must be a dict of Kafka config names")
        if isinstance(self.faults, Fault):
            raise FaultError(f"faults={self.faults!r} is not allowed: faults takes a list, e.g. faults=[{self.faults!r}]")
        if not isinstance(self.faults, (list, tuple)):
            raise FaultError(f"faults={self.faults!r} is not allowed: faults takes a list of edsim.faults specs")
        self.faults = list(self.faults)
        for fault in self.faults:
            if not isinstance(fault, Fault):
                raise FaultError(f"{fault!r} is not a fault: build faults with edsim.faults.crash(...), "
                                 "isolate(...), partition(...), pause(...), slow(...) or drop(...)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed={self.seed!r} is not allowed: seed must be a whole number")
        self.check()

    # ---- validation -------------------------------------------------------------------------------------
    def topic_name(self) -> str:
        name = self.topic.get("name", "events")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"topic name={name!r} is not allowed: it must be a non-empty string")
        return name

    def topic_config(self) -> dict:
        return {k: v for k, v in self.topic.items() if k != "name"}

    def check(self):
        """Raise on anything Kafka or edsim would refuse, before a run starts."""
        if isinstance(self.brokers, bool) or not isinstance(self.brokers, int) or self.brokers < 1:
            raise ConfigError(f"brokers={self.brokers!r} is not allowed: brokers must be a whole number >= 1")
        self.topic_name()
        topic = Config("topic", TOPIC, self.topic_config())
        if topic["replication.factor"] > self.brokers:
            raise ConfigError(f"replication.factor={topic['replication.factor']} is not allowed: it must be at "
                              f"most the number of brokers ({self.brokers}); Kafka answers "
                              "INVALID_REPLICATION_FACTOR")
        Config("broker", BROKER, self.broker)
        Config("consumer", CONSUMER, self.consumer)
        workload = workload_config(self.workload)
        producer_config(producer_settings(workload, self.producer))
        if workload["pipeline"]:
            producer_config(pipeline_producer_settings(workload, self.producer, 0))
        if workload["transaction_size"] or workload["pipeline"] == "exactly_once_v2":
            rf = Config("broker", BROKER, self.broker)["transaction.state.log.replication.factor"]
            if rf > self.brokers:
                raise ConfigError(f"transaction.state.log.replication.factor={rf} is not allowed with "
                                  f"{self.brokers} broker(s): Kafka cannot create __transaction_state. Set "
                                  f"broker={{'transaction.state.log.replication.factor': {self.brokers}}}")
        clients = ["producer"] + [f"consumer-{i + 1}" for i in range(workload["consumers"])]
        groups = [workload["group"]] if workload["consumers"] else []
        partitions = {self.topic_name(): topic["partitions"]}
        if workload["pipeline"]:
            partitions[self.topic_name() + "-out"] = topic["partitions"]
        for fault in self.faults:
            for target in fault.targets_named():
                check_target(target, list(range(1, self.brokers + 1)), self.topic_name(), partitions, clients,
                             groups, self.transactional_ids(workload))

    def transactional_ids(self, workload=None) -> list[str]:
        """The transactional.ids of the run: the producer's, then each pipeline member's."""
        workload = workload or workload_config(self.workload)
        ids = [producer_settings(workload, self.producer).get("transactional.id")]
        ids += [pipeline_producer_settings(workload, self.producer, i).get("transactional.id")
                for i in range(workload["consumers"] if workload["pipeline"] else 0)]
        return [i for i in ids if i]

    # ---- copies -----------------------------------------------------------------------------------------
    def replace(self, **changes) -> "Scenario":
        """A changed copy. ``replace(seed=3)``, ``replace(producer={...})`` (the whole section), or one setting
        by its dotted name: ``replace(**{"producer.acks": "1"})``."""
        fields = {name: copy.deepcopy(getattr(self, name)) for name in
                  ("brokers", "topic", "producer", "consumer", "broker", "workload", "faults", "seed")}
        for key, value in changes.items():
            section, dot, setting = key.partition(".")
            if dot and section in SECTIONS:
                fields[section][setting] = value
            elif key in fields:
                fields[key] = value
            else:
                raise unknown_key("scenario", key, list(fields) + [f"{s}.<config>" for s in SECTIONS])
        return Scenario(**fields)

    def to_code(self) -> str:
        """The ``edsim.simulate(...)`` call that runs this scenario."""
        parts = [f"brokers={self.brokers}"] if self.brokers != 3 else []
        for name in SECTIONS:
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value!r}")
        if self.faults:
            parts.append("faults=[" + ", ".join(repr(f) for f in self.faults) + "]")
        parts.append(f"seed={self.seed}")
        return "edsim.simulate(\n    " + ",\n    ".join(parts) + ",\n)"

    # ---- running ----------------------------------------------------------------------------------------
    def run(self, seed: int | None = None, progress=None) -> "Result":
        """Run it. ``progress(phase, simulated_seconds)``, if given, hears of each phase ("workload", "drain",
        "heal", "catch-up", "done") and every 5 simulated seconds within one: long runs can show it."""
        return self.start(seed, progress=progress).finish()

    @fewer_collections()
    def start(self, seed: int | None = None, progress=None) -> "LiveRun":
        """The same run, held at t=0 to advance step by step (``edsim.live.LiveRun``): faults can then be injected
        *now*, as a panel's live mode does; ``.finish()`` ends it exactly as ``run()`` would."""
        from .live import LiveRun
        return LiveRun(self, seed, progress)

    def _setup(self, seed, progress):
        """Build the world of a run and start its workload (``run`` and ``start`` share it)."""
        seed = self.seed if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed={seed!r} is not allowed: seed must be a whole number")
        broker = dict(self.broker)
        # The group forms at once, as in Kafka's own test setups; the broker default (3000 ms) applies if set.
        broker.setdefault("group.initial.rebalance.delay.ms", 0)
        lab = Cluster(self.brokers, seed, broker)
        name = self.topic_name()
        lab.create_topic(name, self.topic_config())
        spec = workload_config(self.workload)
        if spec["pipeline"]:
            lab.create_topic(f"{name}-out", self.topic_config())
        workload = Workload(lab, name, spec, self.producer, self.consumer)
        nemesis = lab.nemesis(name)
        if workload.consumers:
            nemesis.groups.append(spec["group"])
        nemesis.txn_ids.extend(self.transactional_ids(spec))
        for fault in self.faults:
            nemesis.schedule(fault)
        horizon = spec["messages"] / spec["rate"]
        ends = [f.ends if f.ends is not None else f.at for f in self.faults]
        interval = max(0.05, (max([horizon] + ends) + 10) / 400)
        sampler = Sampler(lab, name, workload.consumers, interval)
        workload.start()
        env = lab.env
        phase = ["workload"]
        if progress is not None:
            def report():
                while True:
                    progress(phase[0], env.now)
                    yield env.timeout(5.0)
            env.process(report())

        def enter(name):
            phase[0] = name
            if progress is not None:
                progress(name, env.now)

        return SimpleNamespace(seed=seed, lab=lab, name=name, workload=workload, nemesis=nemesis, ends=ends,
                               sampler=sampler, interval=interval, enter=enter)

    @fewer_collections()
    def _finish(self, run, scenario=None) -> "Result":
        """The phases after the start: workload and faults, drain, heal, catch-up (``LiveRun.finish`` calls it)."""
        lab, workload, nemesis, ends, sampler, enter = (run.lab, run.workload, run.nemesis, run.ends, run.sampler,
                                                        run.enter)
        env = lab.env
        env.run(until=workload.produced)                       # 1. the workload and its faults
        if ends and env.now < max(ends):
            env.run(until=max(ends))
        enter("drain")
        env.run(until=env.process(workload.drained()))         #    ... until the group has caught up
        enter("heal")
        nemesis.heal_all()                                     # 2. heal what can heal
        # the final reader reads as the scenario's consumers are configured (downstream of a pipeline too)
        isolation = Config("consumer", CONSUMER, self.consumer)["isolation.level"]
        enter("catch-up")
        env.run(until=workload.catch_up(isolation))            # 3. read everything that is there
        sampler.running = False
        enter("done")
        return Result(scenario or self.replace(seed=run.seed), lab, workload, sampler, run.interval)


ARGUMENTS = ("brokers", "topic", "producer", "consumer", "broker", "workload", "faults", "seed")


def simulate(**kwargs) -> "Result":
    """Run one scenario: ``edsim.simulate(brokers=3, topic={...}, producer={...}, faults=[...], seed=7)``."""
    for key in kwargs:
        if key not in ARGUMENTS:
            raise unknown_key("simulate() argument", key, ARGUMENTS)
    return Scenario(**kwargs).run()


class Result:
    """What a run left: its history, the anomalies the checker named, broker truth and metrics."""

    def __init__(self, scenario, lab, workload, sampler, interval):
        self.scenario = scenario
        self.seed = scenario.seed
        self.duration = lab.now
        self._messages = lab.world.network.sent       # messages the network carried (the benchmark counts them)
        self.notes = list(workload.producer.notes)
        self._history = lab.history
        report = checker.check(lab.history)
        self.anomalies: dict[str, int] = report.anomalies
        self.anomaly_cases: dict[str, pd.DataFrame] = report.cases
        self.truth = Truth(lab.kafka, workload.topic)
        self.faults = list(lab.nemesis().applied)
        self.producer_errors = dict(workload.producer.errors)   # error code -> responses the producer got
        self._frame = None
        self._sampler = sampler
        self._interval = interval
        self._metrics = None
        offline = self.truth.offline()
        if offline:
            self.notes.append("partitions still offline at the end (no eligible leader): "
                              + ", ".join(f"{t}-{p}" for t, p in offline))

    @property
    def plot(self):
        """Pictures of this run, as pandas' ``frame.plot``: ``result.plot.log()``, ``.timeline()``, ``.metrics()``."""
        from .viz import PlotAccessor
        return PlotAccessor(self)

    @property
    def history(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = self._history.to_frame()
        return self._frame

    @property
    def metrics(self) -> pd.DataFrame:
        if self._metrics is None:
            self._metrics = cluster_frame(self._sampler.partition_frame(), self.history, self._interval)
        return self._metrics

    @property
    def partition_metrics(self) -> pd.DataFrame:
        return self._sampler.partition_frame()

    def members(self) -> pd.DataFrame:
        """Per workload consumer: records polled and processed, commits acknowledged and refused, assignments."""
        h = self.history
        h = h[h["process"].astype(str).str.fullmatch(r"consumer-\d+")]
        rows = []
        for name, g in h.groupby("process", observed=True):
            commits = g[g["f"] == "commit"]
            rows.append({"consumer": name,
                         "polled": int((g["f"] == "poll").sum()),
                         "processed": int((g["f"] == "process").sum()),
                         "commits ok": int(commits["op"][commits["type"] == "ok"].nunique()),
                         "commits failed": int(commits["op"][commits["type"] != "ok"].nunique()),
                         "assignments": int(g["op"][(g["f"] == "assign") & (g["type"] == "ok")].nunique()),
                         "crashes": int((g["f"] == "crash").sum())})
        return pd.DataFrame(rows).set_index("consumer") if rows else pd.DataFrame()

    def transactions(self) -> pd.DataFrame:
        """One row per transaction: who, when it began and ended, its outcome (committed, aborted, unknown),
        its records, and its latency (begin to end) in ms."""
        h = self.history
        t = h[h["f"] == "txn"]
        outcome = t["type"].astype(str).map({"ok": "committed", "fail": "aborted", "info": "unknown"})
        return pd.DataFrame({"process": t["process"].astype(str).to_numpy(), "begin": t["invoke_time"].to_numpy(),
                             "end": t["time"].to_numpy(), "outcome": outcome.to_numpy(),
                             "records": t["value"].to_numpy(),
                             "latency_ms": ((t["time"] - t["invoke_time"]) * 1000).to_numpy(),
                             "detail": t["detail"].to_numpy()})

    def pipeline(self) -> dict:
        """End-to-end accounting of a consume-transform-produce run: of the inputs the producer got
        acknowledged (committed, if transactional), how many outputs the final reader of '<topic>-out' saw
        exactly once, more than once (at different offsets), or never. Empty without a pipeline."""
        spec = workload_config(self.scenario.workload)
        if not spec["pipeline"]:
            return {}
        h = self.history
        topic = self.scenario.topic_name()
        inputs = h[(h["f"] == "send") & (h["type"] == "ok") & (h["topic"] == topic)]["value"].unique()
        out = h[(h["f"] == "poll") & (h["process"] == "catch-up") & (h["topic"] == topic + "-out")]
        seen = out.drop_duplicates(["value", "partition", "offset"]).groupby("value").size()
        copies = seen.reindex(np.asarray(inputs) + OUTPUT, fill_value=0).to_numpy()
        # end to end: an input's send to the first acknowledgement (at_least_once) or commit (exactly_once_v2)
        # of its output; throughput: outputs over the span from the first input to the last output
        sent = h[(h["f"] == "send") & (h["type"] == "ok") & (h["topic"] == topic)].drop_duplicates("value")
        done = h[(h["f"] == "send") & (h["type"] == "ok") & (h["topic"] == topic + "-out")]
        done = done.sort_values("time").drop_duplicates("value")
        began = pd.Series(sent["invoke_time"].to_numpy(), index=sent["value"].to_numpy())
        ended = pd.Series(done["time"].to_numpy(), index=done["value"].to_numpy() - OUTPUT)
        latency = (ended - began.reindex(ended.index)).dropna() * 1000
        span = ended.max() - began.min() if len(ended) else float("nan")
        report = {"inputs acknowledged": int(len(inputs)), "outputs exactly once": int((copies == 1).sum()),
                  "outputs duplicated": int((copies > 1).sum()), "outputs missing": int((copies == 0).sum())}
        if len(latency):
            report["output latency p50 (ms)"] = round(float(latency.quantile(0.5)), 1)
            report["output latency p99 (ms)"] = round(float(latency.quantile(0.99)), 1)
            report["output throughput (records/s)"] = round(float(len(ended) / span), 1) if span > 0 else float("nan")
        return report

    def counts(self) -> dict:
        h = self.history
        sends = h[h["f"] == "send"]
        final = sends.drop_duplicates("value", keep="last")
        polls = h[(h["f"] == "poll")]
        processed = h[h["f"] == "process"]
        return {
            "records sent": int(final["value"].nunique()),
            "acknowledged": int((final["type"] == "ok").sum()),
            "failed": int((final["type"] == "fail").sum()),
            "outcome unknown": int((final["type"] == "info").sum()),
            "read by consumers": int(polls.loc[polls["process"] != "catch-up", "value"].nunique()),
            "read by the final catch-up": int(polls.loc[polls["process"] == "catch-up", "value"].nunique()),
            "processed": int(processed["value"].nunique()),
        }

    def summary(self) -> pd.DataFrame:
        """The table to read first: what was sent, what came back, what the checker found."""
        rows = [("setup", _setup_line(self.scenario))]
        rows += list(self.counts().items())
        h = self.history
        ok = h[(h["f"] == "send") & (h["type"] == "ok")]
        if len(ok):
            latency = (ok["time"] - ok["invoke_time"]) * 1000
            rows.append(("ack latency p50 / p99 (ms)", f"{latency.quantile(0.5):.1f} / {latency.quantile(0.99):.1f}"))
        txns = h[h["f"] == "txn"]
        if len(txns):
            kinds = txns["type"].astype(str).value_counts()
            rows.append(("transactions committed / aborted / unknown",
                         f"{kinds.get('ok', 0)} / {kinds.get('fail', 0)} / {kinds.get('info', 0)}"))
            ok_txns = txns[txns["type"] == "ok"]
            if len(ok_txns):
                lat = (ok_txns["time"] - ok_txns["invoke_time"]) * 1000
                rows.append(("transaction latency p50 / p99 (ms)",
                             f"{lat.quantile(0.5):.1f} / {lat.quantile(0.99):.1f}"))
        for name, value in self.pipeline().items():
            rows.append((f"pipeline: {name}", value))
        rows.append(("faults", "; ".join(repr(f) for f in self.scenario.faults) or "none"))
        for name, count in self.anomalies.items():
            if count or name in ("lost-write", "duplicate", "unseen"):
                rows.append((name, count))
        rows.append(("simulated seconds", round(self.duration, 3)))
        for note in self.notes:
            rows.append(("note", note))
        frame = pd.DataFrame(rows, columns=["", "value"]).set_index("")
        frame.index.name = None
        return frame

    def __repr__(self):
        found = {k: v for k, v in self.anomalies.items() if v}
        return f"<Result seed={self.seed}: {found or 'no anomalies'}>"


def _setup_line(s: Scenario) -> str:
    p, _ = producer_config(s.producer)
    t = Config("topic", TOPIC, s.topic_config())
    b = Config("broker", BROKER, s.broker)
    min_isr = t["min.insync.replicas"] if "min.insync.replicas" in t.explicit else b["min.insync.replicas"]
    unclean = t["unclean.leader.election.enable"] if "unclean.leader.election.enable" in t.explicit \
        else b["unclean.leader.election.enable"]
    w = workload_config(s.workload)
    extra = ""
    if w["transaction_size"]:
        extra += f"; transactions of {w['transaction_size']}" + (f", {w['abort_ratio']:.0%} aborted"
                                                                 if w["abort_ratio"] else "")
    if w["pipeline"]:
        extra += f"; pipeline {w['pipeline']}"
    isolation = Config("consumer", CONSUMER, s.consumer)["isolation.level"]
    if isolation != "read_uncommitted" or extra:
        extra += f"; {isolation}"
    return (f"{s.brokers} brokers, RF={t['replication.factor']}, min.insync.replicas={min_isr}, "
            f"unclean={str(unclean).lower()}; acks={p['acks']}, idempotence={str(p['enable.idempotence']).lower()}"
            + extra)
