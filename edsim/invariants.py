"""Declared invariants: what a system of services promises, checked over the history alone.

Each is a name and a check; ``result.anomalies`` reports it under its name (0 when it held) and
``result.anomaly_cases[name]`` lists every violation with its evidence, like the checker's anomalies.

    invariants=[invariants.never_below("inventory", "stock", 0),
                invariants.exactly_one_output("orders", "receipts")]

They read only what the history records: ``state`` rows (a store changed), ``view`` rows (a view answered a
read), the final catch-up's reads, acknowledged sends, and the lineage of derived values.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .checker import cases_frame
from .configs import ConfigError

FOLDS = ("count",)


class Invariant:
    """A named check over the history; subclasses give ``cases(frame, lineage)``."""

    name = "invariant"

    def check_scenario(self, scenario):
        """Raise ConfigError if the scenario cannot be what this invariant speaks of."""

    def check_run(self, run):
        """Raise ConfigError if the finished run shows the invariant names something that never existed."""

    def cases(self, frame: pd.DataFrame, lineage) -> pd.DataFrame:  # pragma: no cover - subclasses
        raise NotImplementedError

    def __repr__(self):
        return f"invariants.{self.name}"


def _service_names(scenario) -> list[str]:
    return scenario.names().names("service", "instance")


def _require_service(scenario, service, what):
    names = _service_names(scenario)
    services = [n for n in names if scenario.names().kind(n) == "service"] + [
        n for n in names if scenario.names().kind(n) == "instance" and n in scenario.services]
    known = sorted(set(scenario.services) | set(n for n in names if scenario.names().kind(n) == "service"))
    if service not in known and service not in services:
        raise ConfigError(f"invariant {what}: service {service!r} is not in the scenario (services: "
                          f"{', '.join(known) or 'none'})")


def _empty(extra=None) -> pd.DataFrame:
    columns = {"process": [], "topic": [], "partition": np.empty(0, np.int64), "offset": np.empty(0, np.int64),
               "value": np.empty(0, np.int64), "time": np.empty(0)}
    columns.update(extra or {})
    return cases_frame(columns, [])


class NeverBelow(Invariant):
    def __init__(self, service: str, store: str, bound):
        if not isinstance(service, str) or not service or not isinstance(store, str) or not store:
            raise ConfigError(f"never_below(service={service!r}, store={store!r}): both are non-empty names")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise ConfigError(f"never_below bound={bound!r} is not allowed: a number")
        self.service, self.store, self.bound = service, store, bound
        self.name = f"never-below:{service}/{store}"

    def check_scenario(self, scenario):
        _require_service(scenario, self.service, self.name)

    def check_run(self, run):
        service = run.cluster.services.get(self.service)
        if service is not None and not any(self.store in i.stores for i in service.instances):
            opened = sorted({s for i in service.instances for s in i.stores})
            raise ConfigError(f"invariant {self.name}: service {self.service!r} never opened a store called "
                              f"{self.store!r} (its stores: {', '.join(opened) or 'none'})")

    def cases(self, frame, lineage):
        rows = frame[(frame["f"] == "state") & (frame["type"] == "ok") & (frame["service"] == self.service)
                     & (frame["topic"] == self.store) & (frame["value"] < self.bound) & (frame["detail"] == "")]
        if not len(rows):
            return _empty({"key": np.empty(0, np.int64)})
        return cases_frame({"process": rows["process"].astype(str).to_numpy(), "topic": rows["topic"].astype(str),
                            "partition": rows["partition"].to_numpy(), "offset": rows["offset"].to_numpy(),
                            "value": rows["value"].to_numpy(), "time": rows["time"].to_numpy(),
                            "key": rows["key"].to_numpy()},
                           (f"{p} set {self.store}[{k}] = {v} at t={t:.3f}, below {self.bound}" for p, k, v, t in
                            zip(rows["process"].astype(str), rows["key"], rows["value"], rows["time"])))

    def __repr__(self):
        return f"invariants.never_below({self.service!r}, {self.store!r}, {self.bound!r})"


class ViewEqualsFold(Invariant):
    """The last answer a view gave for each key equals the fold of the log (``count``: records with that key)
    as the final catch-up read it."""

    def __init__(self, view: str, log: str, fold: str = "count"):
        if fold not in FOLDS:
            raise ConfigError(f"view_equals_fold fold={fold!r} is not allowed: one of {', '.join(FOLDS)}")
        self.view, self.log, self.fold = view, log, fold
        self.name = f"view-equals-fold:{view}/{log}"

    def check_scenario(self, scenario):
        _require_service(scenario, self.view, self.name)

    def cases(self, frame, lineage):
        reads = frame[(frame["f"] == "view") & (frame["type"] == "ok") & (frame["service"] == self.view)]
        last = reads.drop_duplicates("key", keep="last").set_index("key")
        log = frame[(frame["f"] == "poll") & (frame["process"] == "catch-up") & (frame["topic"] == self.log)]
        log = log.drop_duplicates(["partition", "offset"])
        folded = log.groupby("key").size()
        expected = folded.reindex(last.index, fill_value=0)
        wrong = last[last["value"].to_numpy() != expected.to_numpy()]
        if not len(wrong):
            return _empty({"key": np.empty(0, np.int64), "expected": np.empty(0, np.int64)})
        exp = expected.loc[wrong.index].to_numpy()
        return cases_frame({"process": wrong["process"].astype(str).to_numpy(), "topic": [self.log] * len(wrong),
                            "partition": np.full(len(wrong), -1), "offset": np.full(len(wrong), -1),
                            "value": wrong["value"].to_numpy(), "time": wrong["time"].to_numpy(),
                            "key": wrong.index.to_numpy(), "expected": exp},
                           (f"{self.view} last answered {v} for key {k}; the log holds {e} records of it"
                            for k, v, e in zip(wrong.index, wrong["value"], exp)))

    def __repr__(self):
        return f"invariants.view_equals_fold({self.view!r}, {self.log!r})"


class ExactlyOneOutput(Invariant):
    """Every acknowledged input on ``input_topic`` has exactly one output on ``output_topic`` (an output is a
    value derived from it, ``ctx.derive``), at one place in the log as the final catch-up read it."""

    def __init__(self, input_topic: str, output_topic: str):
        for n, v in (("input_topic", input_topic), ("output_topic", output_topic)):
            if not isinstance(v, str) or not v:
                raise ConfigError(f"exactly_one_output {n}={v!r} is not allowed: a topic name")
        self.input, self.output = input_topic, output_topic
        self.name = f"exactly-one-output:{input_topic}->{output_topic}"

    def cases(self, frame, lineage):
        sent = frame[(frame["f"] == "send") & (frame["type"] == "ok") & (frame["topic"] == self.input)]
        inputs = sent.drop_duplicates("value")
        out = frame[(frame["f"] == "poll") & (frame["process"] == "catch-up") & (frame["topic"] == self.output)]
        places = out.drop_duplicates(["value", "partition", "offset"])
        derived, parents = lineage if lineage is not None else (np.empty(0, np.int64), np.empty(0, np.int64))
        parent_of = pd.Series(parents, index=derived)
        source = parent_of.reindex(places["value"].to_numpy()).to_numpy()
        copies = pd.Series(1, index=source[~np.isnan(source)].astype(np.int64)).groupby(level=0).sum() \
            if len(source) else pd.Series(dtype=np.int64)
        n = copies.reindex(inputs["value"].to_numpy(), fill_value=0).to_numpy()
        bad = inputs[n != 1]
        count = n[n != 1]
        if not len(bad):
            return _empty({"outputs": np.empty(0, np.int64)})
        return cases_frame({"process": bad["process"].astype(str).to_numpy(), "topic": bad["topic"].astype(str),
                            "partition": bad["partition"].to_numpy(), "offset": bad["offset"].to_numpy(),
                            "value": bad["value"].to_numpy(), "time": bad["time"].to_numpy(), "outputs": count},
                           (f"input {v} on {self.input} has {c} outputs on {self.output}" for v, c in
                            zip(bad["value"], count)))

    def __repr__(self):
        return f"invariants.exactly_one_output({self.input!r}, {self.output!r})"


class LatestPerKey(Invariant):
    """A compacted topic keeps the latest acknowledged value of every key: for each key, the final catch-up
    read holds a record of that key at or after the offset of its last acknowledged write. Older values may
    survive (the dirty part, the active segment); the last write may be a later one whose outcome the producer
    never learnt; and a key's last write may be gone only if the cleaner removed it as an expired tombstone
    (a ``compact`` row of the history). Kafka's docs, "Log Compaction": "Any consumer that stays caught-up to
    within the head of the log will see every message ... the latest value for each key"."""

    def __init__(self, topic: str):
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"latest_per_key topic={topic!r} is not allowed: a topic name")
        self.topic = topic
        self.name = f"latest-per-key:{topic}"

    def cases(self, frame, lineage):
        mine = frame[(frame["topic"] == self.topic) & (frame["key"] >= 0)]
        acked = mine[(mine["f"] == "send") & (mine["type"] == "ok") & (mine["offset"] >= 0)]
        last = acked.sort_values("offset").drop_duplicates(["partition", "key"], keep="last")
        read = mine[(mine["f"] == "poll") & (mine["process"] == "catch-up")]
        newest = read.groupby(["partition", "key"])["offset"].max()
        held = newest.reindex(pd.MultiIndex.from_frame(last[["partition", "key"]])).to_numpy()
        expired = np.isin(last["value"].to_numpy(), mine[mine["f"] == "compact"]["value"].to_numpy())
        bad = last[~((held >= last["offset"].to_numpy()) | expired)]
        if not len(bad):
            return _empty({"key": np.empty(0, np.int64)})
        return cases_frame({"process": bad["process"].astype(str).to_numpy(), "topic": bad["topic"].astype(str),
                            "partition": bad["partition"].to_numpy(), "offset": bad["offset"].to_numpy(),
                            "value": bad["value"].to_numpy(), "time": bad["time"].to_numpy(),
                            "key": bad["key"].to_numpy()},
                           (f"key {k} of {self.topic}-{p}: its last acknowledged value {v} (offset {o}) is not in "
                            f"the final read, nor anything of that key after it" for k, p, v, o in
                            zip(bad["key"], bad["partition"], bad["value"], bad["offset"])))

    def __repr__(self):
        return f"invariants.latest_per_key({self.topic!r})"


def never_below(service: str, store: str, bound) -> Invariant:
    """No value ``service`` writes to its store ``store`` is below ``bound`` (stock never negative)."""
    return NeverBelow(service, store, bound)


def view_equals_fold(view: str, log: str, fold: str = "count") -> Invariant:
    """The view's last answer per key equals the fold of the topic ``log`` as finally read."""
    return ViewEqualsFold(view, log, fold)


def exactly_one_output(input_topic: str, output_topic: str) -> Invariant:
    """Each acknowledged input has exactly one output downstream."""
    return ExactlyOneOutput(input_topic, output_topic)


def latest_per_key(topic: str) -> Invariant:
    """A compacted topic's final read holds the latest acknowledged value of every key (or something later)."""
    return LatestPerKey(topic)
