"""What a run left: its history, the anomalies the checker and the declared invariants named, broker truth,
metrics, and per-service accounting."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import checker
from . import losses as _losses
from .clients import producer_config
from .configs import BROKER, CONSUMER, TOPIC, Config
from .kafka import protocol as P
from .metrics import cluster_frame
from .truth import Truth
from .workload import workload_config


class UnknownName(KeyError):
    """A name that is not in a ``Named`` dict; its message lists the names there are."""

    def __str__(self):                 # KeyError's own str() would quote the sentence
        return str(self.args[0]) if self.args else ""


class Named(dict):
    """A plain dict (it compares, prints and pickles as one) whose missing key answers with the names there are:
    ``result.anomalies["lost_write"]`` says ``did you mean 'lost-write'?``."""

    __slots__ = ("what",)

    def __init__(self, data=(), what="name"):
        super().__init__(data)
        self.what = what

    def __missing__(self, key):
        import difflib
        close = difflib.get_close_matches(str(key), [str(k) for k in self], n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise UnknownName(f"no {self.what} {key!r}{hint} The names there are: {', '.join(map(str, self))}")

    def __reduce__(self):
        return (Named, (dict(self), self.what))


class Result:
    """What a run left: its history, the anomalies the checker named, broker truth and metrics."""

    def __init__(self, run, scenario):
        lab = run.cluster
        self.scenario = scenario
        self.seed = run.seed
        self.duration = lab.now
        self._messages = lab.world.network.sent       # messages the network carried (the benchmark counts them)
        producer = lab.producers.get("producer")
        self.notes = list(producer.notes) if producer is not None else []
        self._history = lab.history
        report = checker.check(lab.history, run.invariants)
        self.anomalies: dict[str, int] = Named(report.anomalies, "anomaly")
        self.anomaly_cases: dict[str, pd.DataFrame] = Named(report.cases, "anomaly")
        self.truth = Truth(lab.kafka, run.topic)
        self.faults = list(lab.nemesis().applied)
        self.producer_errors = dict(producer.errors) if producer is not None else {}   # error code -> responses
        self._frame = None
        self._sampler = run.sampler
        self._interval = run.interval
        self._metrics = None
        self._services = _service_rows(run)
        self._roles = lab.history.roles()
        self._processing_services = _losses.processing_services(run)
        self._catch_up_gaps = _losses.catch_up_gaps(run)
        self._kafka = lab.kafka
        self._principals = {name: node.principal for name, node in lab.world.nodes.items()
                            if hasattr(node, "principal") and not name.startswith("broker-")}
        self._losses = None
        if lab.auto_created:
            self.notes.append("topics created on first use (auto.create.topics.enable): "
                              + ", ".join(lab.auto_created))
        if run.caught_up is False:
            self.notes.append(f"the final catch-up did not reach the end of every partition within "
                              f"{run.catch_up_time:.0f} s: records it did not read count as unseen")
        offline = self.truth.offline()
        if offline:
            self.notes.append("partitions still offline at the end (no eligible leader): "
                              + ", ".join(f"{t}-{p}" for t, p in offline))

    @property
    def services(self) -> pd.DataFrame:
        """One row per service: instances, records processed, restarts, state restored (records and time, and
        the longest single restore), and the lag its group left (records not read at the end)."""
        return self._services.copy()

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
        if self.scenario is None or not workload_config(self.scenario.workload)["pipeline"]:
            return {}
        h = self.history
        topic = self.scenario.topic_name()
        inputs = h[(h["f"] == "send") & (h["type"] == "ok") & (h["topic"] == topic)]["value"].unique()
        out = h[(h["f"] == "poll") & (h["process"] == "catch-up") & (h["topic"] == topic + "-out")]
        seen = out.drop_duplicates(["value", "partition", "offset"]).groupby("value").size()
        derived, parents = self._history.lineage()
        parent_of = pd.Series(parents, index=derived)
        per_input = pd.Series(seen.to_numpy(), index=parent_of.reindex(seen.index).to_numpy()).groupby(level=0).sum()
        copies = per_input.reindex(np.asarray(inputs), fill_value=0).to_numpy()
        # end to end: an input's send to the first acknowledgement (at_least_once) or commit (exactly_once_v2)
        # of its output; throughput: outputs over the span from the first input to the last output
        sent = h[(h["f"] == "send") & (h["type"] == "ok") & (h["topic"] == topic)].drop_duplicates("value")
        done = h[(h["f"] == "send") & (h["type"] == "ok") & (h["topic"] == topic + "-out")]
        done = done.sort_values("time").drop_duplicates("value")
        began = pd.Series(sent["invoke_time"].to_numpy(), index=sent["value"].to_numpy())
        ended = pd.Series(done["time"].to_numpy(), index=parent_of.reindex(done["value"].to_numpy()).to_numpy())
        latency = (ended - began.reindex(ended.index)).dropna() * 1000
        span = ended.max() - began.min() if len(ended) else float("nan")
        report = {"inputs acknowledged": int(len(inputs)), "outputs exactly once": int((copies == 1).sum()),
                  "outputs duplicated": int((copies > 1).sum()), "outputs missing": int((copies == 0).sum())}
        if len(latency):
            report["output latency p50 (ms)"] = round(float(latency.quantile(0.5)), 1)
            report["output latency p99 (ms)"] = round(float(latency.quantile(0.99)), 1)
            report["output throughput (records/s)"] = round(float(len(ended) / span), 1) if span > 0 else float("nan")
        return report

    def losses(self) -> pd.DataFrame:
        """What the run lost or left undone, whatever the checker's anomaly names say (edsim/losses.py): one row
        per topic for acknowledged records absent from the final log, and for those unreadable because every
        replica holding them is down; per consumer group, the acknowledged records it never processed; per
        partition the final catch-up could not read to its end, why. Columns what, group, topic, partition,
        records, why; empty when nothing was lost or left undone."""
        if self._losses is None:
            groups = _losses.processing_groups(self.history, self._roles, self._processing_services)
            h = self.history
            outputs = _losses.durable_outputs(h, self._history.values, self._roles, groups)
            self._losses = _losses.losses(h, self._kafka, groups, self._catch_up_gaps, outputs)
        return self._losses.copy()

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
        rows = [("setup", _setup_line(self.scenario))] if self.scenario is not None else []
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
        rows.append(("faults", "; ".join(repr(f) for _, f, _ in self.faults) or "none")
                    if self.scenario is None else
                    ("faults", "; ".join(repr(f) for f in self.scenario.faults) or "none"))
        for name, count in self.anomalies.items():
            if count or name in ("lost-write", "duplicate", "unseen"):
                rows.append((name, count))
        rows += _loss_rows(self.losses())
        rows += _authorization_rows(h, self._principals)
        for process, error, detail in _refusals(h):
            rows.append(("error", f"{process} could not join its group: {error} ({detail})"))
        rows.append(("simulated seconds", round(self.duration, 3)))
        for note in self.notes:
            rows.append(("note", note))
        frame = pd.DataFrame(rows, columns=["", "value"]).set_index("")
        frame.index.name = None
        return frame

    def __repr__(self):
        found = {k: v for k, v in self.anomalies.items() if v}
        return f"<Result seed={self.seed}: {found or 'no anomalies'}>"


AUTHORIZATION_FAILED = sorted(P.AUTHORIZATION_FAILED)
LOSS_SECTION = "what the run lost or left undone"


def _loss_rows(frame: pd.DataFrame) -> list[tuple]:
    """The summary's section on losses: one line saying nothing was, or one line per loss."""
    if not len(frame):
        # (short enough not to widen the summary's column: the setup line is longer)
        return [(LOSS_SECTION, "nothing: every acknowledged record is in the final log and was processed")]
    rows = []
    for r in frame.itertuples(index=False):
        where = r.topic if pd.isna(r.partition) else f"{r.topic}-{r.partition}"
        if r.what == "never processed":
            rows.append((f"lost or undone: never processed by {r.group}", f"{r.records} records of {where}"))
        elif r.what == "not caught up":
            rows.append((f"lost or undone: final read stopped short of {where}", r.why))
        else:
            rows.append((f"lost or undone: {r.what}", f"{r.records} records of {where}: {r.why}"))
    return rows


def _refusals(h: pd.DataFrame) -> list[tuple]:
    """(process, error, detail) of each member the coordinator refused for good (a ``subscribe`` row of type
    ``fail``, such as INVALID_SESSION_TIMEOUT), once per process and error."""
    rows = h[(h["f"] == "subscribe") & (h["type"] == "fail") & ~h["error"].isin(AUTHORIZATION_FAILED)]
    rows = rows.drop_duplicates(["process", "error"])
    return [(str(p), str(e), str(d)) for p, e, d in zip(rows["process"], rows["error"], rows["detail"])]


def _authorization_rows(h: pd.DataFrame, principals: dict) -> list[tuple]:
    """One summary row per client the authorizer refused (edsim/kafka/acl.py): its principal, and per error and
    resource how many records, partitions, joins or commits were refused."""
    denied = h[h["error"].isin(AUTHORIZATION_FAILED) & (h["type"] == "fail")]
    rows = []
    for process, own in denied.groupby("process", observed=True, sort=False):
        parts = []
        for (f, error, topic, group), g in own.groupby(["f", "error", "topic", "group"], observed=True, sort=False):
            if f == "send":
                parts.append(f"{len(g)} records to {topic} refused ({error})")
            elif f == "assign":
                parts.append(f"reading {topic} refused on {g['partition'].nunique()} partitions ({error})")
            elif f == "subscribe":
                times = f"{len(g)} time{'s' if len(g) != 1 else ''}"
                what = f"subscribing to {topic}" if error == "TOPIC_AUTHORIZATION_FAILED" and topic else \
                    f"group {group or '?'}"
                parts.append(f"{what} refused {times} ({error})")
            elif f == "commit":
                parts.append(f"{g['op'].nunique()} offset commits of {topic} refused ({error})")
            else:
                parts.append(f"{len(g)} {f} rows refused ({error})")
        rows.append((f"authorization failures: {process} ({principals.get(str(process), '?')})", "; ".join(parts)))
    return rows


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


def _service_rows(run) -> pd.DataFrame:
    lab = run.cluster
    if not lab.services:
        return pd.DataFrame(columns=["instances", "processed", "restarts", "records restored", "restore time (s)",
                                     "longest restore (s)", "lag"])
    roles = lab.history.roles()
    cols = lab.history.columns()
    names = lab.history.names()
    process_service = np.array([roles.get(p, ("", ""))[1] for p in names["process"]] or [""], dtype=object)
    processed = cols["f"] == names["f"].index("process")
    kafka = lab.kafka
    rows = []
    for name, service in lab.services.items():
        mine = processed & (process_service[cols["process"]] == name) if len(cols["process"]) else processed
        values = cols["value"][mine]
        # lab.restores: (service, instance, store, partition, records, started, finished) per restore
        r = [(records, finished - started) for service_name, _i, _s, _p, records, started, finished in lab.restores
             if service_name == name]
        took = [t for _, t in r]
        lag = 0
        groups = {c.membership.group: c for c in service.consumers()}
        for group, member in groups.items():
            committed = _committed_offsets(kafka, group)
            for topic in member.membership.topics:
                for tp in kafka.partitions(topic):
                    state = kafka.controller.partitions[tp]
                    leader = kafka.brokers.get(state.leader)
                    if leader is not None and leader.up:
                        lag += max(leader.replicas[tp].hw - committed.get(tp, 0), 0)
        rows.append({"service": name, "instances": len(service.instances),
                     "processed": int(len(np.unique(values))),
                     "restarts": sum(i.restarts for i in service.instances),
                     "records restored": int(sum(records for records, _ in r)),
                     "restore time (s)": round(float(sum(took)), 4),
                     "longest restore (s)": round(float(max(took)), 4) if r else 0.0,
                     "lag": int(lag)})
    return pd.DataFrame(rows).set_index("service")


def _committed_offsets(kafka, group) -> dict:
    """A group's committed offsets as its coordinator holds them (truth, for the lag a service leaves)."""
    for broker in kafka.brokers.values():
        g = broker.coordinator.groups.get(group) if broker.up else None
        if g is not None and broker.coordinator._replica(group) is not None:
            return dict(g.offsets)
    return {}
