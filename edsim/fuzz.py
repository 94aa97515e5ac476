"""``python -m edsim.fuzz``: random fault schedules on safe settings, and what Kafka's guarantees forbid in them.

Every run is a scenario on the settings Kafka's documentation calls durable (``acks=all``, idempotence,
replication factor 3, ``min.insync.replicas=2``, clean elections, offsets committed after processing), in one of
four variants (a plain group, a transactional producer read by a ``read_committed`` group, an ``exactly_once_v2``
pipeline, and two services of ``edsim.apps`` in two groups), with one to five faults drawn at random. Every fault
heals, so the run ends with a whole cluster, and then:

- a **forbidden** anomaly is one Kafka's guarantees rule out for these settings *and the faults drawn*
  (``allowed`` and ``judge``): duplicates after a producer restart are allowed (idempotence is per producer session, KIP-98),
  at-least-once groups may process a record twice, power lost by two brokers may lose what neither had
  flushed (Kafka acknowledges on replication, not on fsync: ``flush.messages``), and so may one power loss when a
  partition was left with no in-sync replica alive (``Truth.emptied_isr``: Kafka then elects the last known
  leader, whatever it lost, KIP-966);
- a **stall** is an acknowledged record a group never processed, or a final read that could not reach a
  partition's end, although every fault healed: a liveness failure, reported in ``Result.losses()``;
- a **crash** is an exception out of ``Scenario.run()``; a **hang** is a run over the per-run time limit (wall
  time, a guard of this tool only: the simulation itself never reads a clock).

A run is named by its id, ``<variant>-<seed>`` (``plain-17``): ``python -m edsim.fuzz --replay plain-17`` plays it
again (the same schedule and history, row for row) and prints its scenario and summary.
"""
from __future__ import annotations

import argparse
import random
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field

from . import faults
from .scenario import Scenario

VARIANTS = ("plain", "transactional", "exactly_once_v2", "services")
SAFE_TOPIC = {"partitions": 3, "replication.factor": 3, "min.insync.replicas": 2,
              "unclean.leader.election.enable": False}
SAFE_PRODUCER = {"acks": "all", "enable.idempotence": True}
# A JoinGroup waits max.poll.interval.ms + 5 s for its answer (AbstractCoordinator's joinGroupTimeoutMs): with the
# default 300 s a member whose coordinator lost power mid-rebalance is silent beyond the run's 120 s drain, as it
# would be in Kafka. 60 s keeps that recovery inside the run, so a group that stalls anyway is a finding.
SAFE_CONSUMER = {"max.poll.interval.ms": 60000}
TIME_LIMIT = 120.0        # wall seconds a run may take before it counts as a hang


class Hang(Exception):
    """The run went over the fuzzer's time limit."""


def scenario(run_id: str) -> Scenario:
    """The scenario a run id names: its variant's safe settings and a fault schedule drawn from its seed."""
    variant, seed = parse(run_id)
    rng = random.Random(f"edsim.fuzz:{variant}:{seed}")
    messages, rate = 400, 200.0
    workload = {"messages": messages, "rate": rate, "keys": 20, "consumers": 2, "commit": "after-process"}
    consumer = dict(SAFE_CONSUMER)
    services = {}
    if variant == "transactional":
        workload.update(transaction_size=10, abort_ratio=0.2)
        consumer["isolation.level"] = "read_committed"
    elif variant == "exactly_once_v2":
        workload["pipeline"] = "exactly_once_v2"
        consumer["isolation.level"] = "read_committed"
    elif variant == "services":
        from .apps import Consume, Load
        from .app.service import service
        workload = {}
        services = {"producer": service(Load, topic="events", messages=messages, rate=rate, keys=20,
                                        producer=dict(SAFE_PRODUCER)),
                    "audit": service(Consume, instances=2, topic="events", group="audit", commit="after-process",
                                     consumer=dict(SAFE_CONSUMER)),
                    "billing": service(Consume, instances=2, topic="events", group="billing",
                                       commit="after-process", consumer=dict(SAFE_CONSUMER))}
    schedule = draw_faults(rng, variant, horizon=messages / rate)
    return Scenario(brokers=3, topic=dict(SAFE_TOPIC), producer=dict(SAFE_PRODUCER), consumer=consumer,
                    workload=workload, faults=schedule, seed=seed,
                    topics={"events": dict(SAFE_TOPIC)} if services else {}, services=services)


def parse(run_id: str) -> tuple[str, int]:
    variant, _, seed = str(run_id).rpartition("-")
    if variant not in VARIANTS or not seed.isdigit():
        raise ValueError(f"run id {run_id!r} is not allowed: it is <variant>-<seed>, variant one of "
                         f"{', '.join(VARIANTS)} (e.g. plain-17)")
    return variant, int(seed)


def _clients(variant: str) -> list[str]:
    if variant == "services":
        return ["producer", "audit-1", "audit-2", "billing-1", "billing-2"]
    return ["producer", "consumer-1", "consumer-2"]


def draw_faults(rng: random.Random, variant: str, horizon: float) -> list:
    """One to five faults, each starting during the load and healing (a crash restarts) after 30 ms to 30 s."""
    brokers = [1, 2, 3]
    roles = ["leader", "followers", "controller", "coordinator"]
    if variant in ("transactional", "exactly_once_v2"):
        roles.append("txn-coordinator")
    clients = _clients(variant)
    out = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.choice(["crash", "crash", "isolate", "partition", "pause", "slow", "drop"])
        at = round(rng.uniform(0.0, horizon), 3)
        lasting = round(min(60.0, 10 ** rng.uniform(-1.5, 1.5)), 3)
        if kind == "crash":
            target = rng.choice(brokers + roles + clients)
            power = not isinstance(target, str) or target in roles
            out.append(faults.crash(target, at=at, restart_after=lasting,
                                    power_loss=power and rng.random() < 0.2))
        elif kind == "isolate":
            out.append(faults.isolate(rng.choice(brokers + roles + clients), at=at, heal_after=lasting))
        elif kind == "partition":
            nodes = brokers + clients
            rng.shuffle(nodes)
            cut = rng.randint(1, len(nodes) - 1)
            out.append(faults.partition(nodes[:cut], nodes[cut:], at=at, heal_after=lasting))
        elif kind == "pause":
            out.append(faults.pause(rng.choice(brokers + roles + clients), at=at, duration=lasting))
        elif kind == "slow":
            out.append(faults.slow(rng.choice(brokers + roles), at=at, factor=rng.choice([2, 10, 100]),
                                   duration=lasting))
        else:
            a, b = rng.sample(brokers + clients, 2)
            out.append(faults.drop(a, b, probability=rng.choice([0.1, 0.5, 1.0]), at=at, duration=lasting))
    return out


def allowed(scenario: Scenario) -> set[str]:
    """The anomalies Kafka's guarantees allow for these safe settings and these faults (see the module's doc)."""
    allowed = set()
    names = {t for f in scenario.faults if f.kind == "crash" for t in f.targets}
    producers = {"producer"} | ({"consumer-1", "consumer-2"} if scenario.workload.get("pipeline") else set())
    if names & producers:
        # a new producer session: idempotence does not span it, so a record sent again lands twice, and a group
        # processes both copies (exactly-once processing is per input record: see judge)
        allowed |= {"duplicate", "duplicate-processing"}
    if scenario.workload.get("pipeline") != "exactly_once_v2":
        allowed.add("duplicate-processing")          # commit after processing: at least once
    if power_lost_brokers(scenario) >= 2:
        # acks=all means "in the memory of min.insync.replicas brokers", not on disk: two brokers losing power may
        # take an acknowledged write with them, and what a client saw of it (Kafka docs, "flush.messages")
        allowed |= LOSSES
    return allowed


def power_lost_brokers(scenario: Scenario) -> int:
    """How many broker power losses the schedule holds, at most (``"followers"`` is every follower)."""
    rf = scenario.topic.get("replication.factor", 3)
    return sum(rf - 1 if f.targets[0] == "followers" else 1 for f in scenario.faults
               if f.kind == "crash" and f.options.get("power_loss") and _a_broker(f.targets[0]))


def _a_broker(target) -> bool:
    """Does a fault target name a broker (an id, or a broker's role), not a client or the controller?"""
    return isinstance(target, int) or target in ("leader", "followers", "coordinator", "txn-coordinator")


@dataclass
class Outcome:
    """What one fuzz run found: ``verdict`` is ok, forbidden, stall, crash or hang."""
    run_id: str
    verdict: str
    found: dict = field(default_factory=dict)
    detail: str = ""
    excused: dict = field(default_factory=dict)    # anomalies present that the faults drawn allow

    def line(self) -> str:
        what = ", ".join(f"{k} {v}" for k, v in self.found.items()) or self.detail
        return f"{self.run_id}: {self.verdict}" + (f" ({what})" if what else "")


LOSSES = {"lost-write", "unseen", "lost-processing", "absent", "inconsistent-offsets", "poll-skip",
          "nonmonotonic-poll", "nonmonotonic-send", "duplicate", "duplicate-processing", "reprocessed"}


def judge(run_id: str, result) -> Outcome:
    """The verdict on a finished run: forbidden anomalies first, then stalls."""
    ok = allowed(result.scenario)
    if power_lost_brokers(result.scenario) and result.truth.emptied_isr():
        # a power loss, and a partition left with no in-sync replica alive (every replica down, or fenced by a
        # controller that heard no heartbeat): Kafka elects its last known leader, whatever it lost (KIP-966)
        ok |= LOSSES
    found = {name: int(n) for name, n in result.anomalies.items() if n and name not in ok}
    if result.scenario.workload.get("pipeline") == "exactly_once_v2":
        h = result.history
        done = h[(h["f"] == "process") & (h["type"] == "ok")]
        again = int(done.duplicated(["topic", "partition", "offset"]).sum())
        if again and "reprocessed" not in ok:        # one input record processed twice: what EOS rules out
            found["reprocessed"] = again
    losses = result.losses()
    absent = losses[losses["what"].str.startswith("acknowledged")]
    if len(absent) and "absent" not in ok:
        found["acknowledged, absent from the final log"] = int(absent["records"].sum())
    if found:
        return Outcome(run_id, "forbidden", found)
    undone = losses[losses["what"].isin(["never processed", "not caught up"])]
    if len(undone) and "lost-write" not in ok:
        # (after correlated power losses a lost write may take a transaction marker with it: a transaction left
        # open for good holds the last stable offset, the hanging transaction KIP-890 guards against)
        return Outcome(run_id, "stall", {}, "; ".join(f"{r.what} {r.group or ''} {r.topic}-{r.partition}: {r.why}"
                                                      for r in undone.itertuples()))
    excused = {name: int(n) for name, n in result.anomalies.items() if n and name in ok}
    return Outcome(run_id, "ok", excused=excused)


def _alarm(signum, frame):
    raise Hang()


def fuzz_one(run_id: str, time_limit: float = TIME_LIMIT) -> Outcome:
    """Run one id under the time limit and judge it (never raises: a crash is an outcome)."""
    try:
        s = scenario(run_id)
        previous = signal.signal(signal.SIGALRM, _alarm) if time_limit else None
        if time_limit:
            signal.setitimer(signal.ITIMER_REAL, time_limit)
        try:
            result = s.run()
        finally:
            if time_limit:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        return judge(run_id, result)
    except Hang:
        return Outcome(run_id, "hang", detail=f"over {time_limit:g} s")
    except Exception as e:          # noqa: BLE001 - a crash is what the fuzzer looks for
        return Outcome(run_id, "crash", detail=f"{type(e).__name__}: {e}")


def ids(n: int, start: int = 0) -> list[str]:
    """``n`` run ids, the variants taking turns: plain-0, transactional-1, exactly_once_v2-2, services-3, ..."""
    return [f"{VARIANTS[i % len(VARIANTS)]}-{i}" for i in range(start, start + n)]


def fuzz(run_ids, workers: int = 1, time_limit: float = TIME_LIMIT, progress=None) -> list[Outcome]:
    """Every id's outcome, in order; ``workers`` > 1 spreads them over processes (each with its own alarm)."""
    from .progress import sweep_progress
    report = sweep_progress(progress)
    run_ids = list(run_ids)
    outcomes = []
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(fuzz_one, run_ids, [time_limit] * len(run_ids), chunksize=4)
            for outcome in results:
                outcomes.append(outcome)
                if report:
                    report(len(outcomes), len(run_ids))
    else:
        for run_id in run_ids:
            outcomes.append(fuzz_one(run_id, time_limit))
            if report:
                report(len(outcomes), len(run_ids))
    return outcomes


def summary_line(outcomes) -> str:
    counts = Counter(o.verdict for o in outcomes)
    return (f"{len(outcomes)} runs on safe settings: {counts['forbidden']} forbidden anomalies, "
            f"{counts['crash']} crashes, {counts['hang']} hangs, {counts['stall']} stalls")


def excused_line(outcomes) -> str:
    """How many clean runs had anomalies their faults allow, by anomaly (what the fuzzer did not count)."""
    by = Counter(name for o in outcomes for name in o.excused)
    runs = sum(1 for o in outcomes if o.excused)
    return (f"{runs} runs had anomalies their faults allow: "
            + (", ".join(f"{name} in {n}" for name, n in sorted(by.items())) or "none"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m edsim.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="how many runs (default 200)")
    parser.add_argument("--start", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT, help="wall seconds per run (a hang)")
    parser.add_argument("--replay", metavar="ID", help="play one run again and print its scenario and summary")
    args = parser.parse_args(argv)
    if args.replay:
        s = scenario(args.replay)
        print(repr(s))
        result = s.run()
        print(result.summary().to_string())
        print(judge(args.replay, result).line())
        return 0
    import os
    workers = args.workers or os.cpu_count() or 1
    outcomes = fuzz(ids(args.n, args.start), workers, args.time_limit, progress=sys.stderr.isatty() or None)
    for outcome in outcomes:
        if outcome.verdict != "ok":
            print(outcome.line())
    print(excused_line(outcomes))
    print(summary_line(outcomes))
    return 1 if any(o.verdict != "ok" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
