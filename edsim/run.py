"""One run of a scenario: its world, its services, and the phases that end it.

1. **load**: the services run with the faults; it lasts until every source (a ``Load``) has sent everything and
   every scheduled fault has begun and ended (a crash without restart ends when it strikes);
2. **drain**: the consumer groups get up to ``DRAIN_LIMIT`` seconds to read what they can;
3. **heal**: every fault that can heal heals (a broker crashed for good stays down);
4. **catch-up**: a fresh consumer (process ``catch-up``) reads every user topic from the start to its end, so that
   a record nobody read is *lost*, not late, as Jepsen's Kafka test ends with a final read;
5. **check**: the history goes to the checker and the declared invariants (``Result``).

``Scenario.run`` and ``LiveRun`` both drive a ``Run``; ``Cluster.result()`` plays phases 3 to 5 on a cluster a
notebook ran by hand.
"""
from __future__ import annotations

from .configs import CONSUMER, Config, seed_value
from .engine import fewer_collections
from .kafka.acl import FINAL_READER_PRINCIPAL
from .lab import Cluster
from .metrics import Sampler
from .workload import workload_config, workload_services

POLL_TIMEOUT = 0.5
CATCH_UP_QUIET = 3.0   # the catch-up reader stops after this long at the end of every partition
CATCH_UP_LIMIT = 60.0  # ... or after this long (or once open transactions have timed out), leaving the rest unread
DRAIN_LIMIT = 120.0    # after the load, the groups get this long to read every acknowledged record
PHASES = ("workload", "drain", "heal", "catch-up", "done")


class Run:
    def __init__(self, scenario, seed=None, progress=None):
        seed = seed_value(scenario.seed if seed is None else seed)
        self.scenario, self.seed, self.progress = scenario, seed, progress
        broker = dict(scenario.broker)
        # The group forms at once, as in Kafka's own test setups; the broker default (3000 ms) applies if set.
        broker.setdefault("group.initial.rebalance.delay.ms", 0)
        self.cluster = lab = Cluster(scenario.brokers, seed, broker)
        self.topic = scenario.main_topic()
        lab.acls.add(*scenario.acls)
        spec = workload_config(scenario.workload)
        if self.topic == scenario.topic_name():
            lab.create_topic(self.topic, scenario.topic_config())
        if spec["pipeline"] and scenario.uses_workload():
            lab.create_topic(f"{self.topic}-out", scenario.topic_config())
        for name, config in scenario.topics.items():
            if name not in lab.kafka.topics:
                lab.create_topic(name, config)
        nemesis = self.nemesis = lab.nemesis(self.topic)
        if spec["consumers"] and scenario.uses_workload():
            nemesis.groups.append((scenario.consumer or {}).get("group.id", spec["group"]))
        nemesis.txn_ids.extend(scenario.transactional_ids(spec))
        self.invariants = list(scenario.invariants)
        lab.invariants = self.invariants
        services = dict(workload_services(self.topic, spec, scenario.producer, scenario.consumer)) \
            if scenario.uses_workload() else {}
        services.update(scenario.services)
        self.sources = []
        for name, value in services.items():
            running = lab.service(name, value, start=False)
            if getattr(running.spec.cls, "source", False):
                self.sources.append(name)
        for running in lab.services.values():
            running.start()
        # The services' first steps (opening their clients) come before the nemesis arms, as set-up does
        env = lab.env
        while env._queue and env._queue[0][0] == env.now and env._queue[0][1] == 0:     # URGENT: process starts
            env.step()
        self.ends = [f.ends if f.ends is not None else f.at for f in scenario.faults]
        for fault in scenario.faults:
            nemesis.schedule(fault)
        horizon = spec["messages"] / spec["rate"] if scenario.uses_workload() else 0.0
        self.interval = max(0.05, (max([horizon] + self.ends) + 10) / 400)
        self.sampler = Sampler(lab, self.topic, self._workload_consumers, self.interval)
        self.phase = "workload"
        if progress is not None:
            def report():
                while True:
                    progress(self.phase, env.now)
                    yield env.timeout(5.0)
            env.process(report())

    @classmethod
    def of_cluster(cls, cluster, invariants=()):
        """A Run around a Cluster a notebook built and ran by hand: only its ending phases remain."""
        run = cls.__new__(cls)
        run.scenario, run.seed, run.progress, run.cluster = None, cluster.world.seed, None, cluster
        run.topic = next((t for t in cluster.kafka.topics if not t.startswith("__")), None)
        run.nemesis = cluster.nemesis(run.topic)
        run.invariants = list(invariants)
        run.sources, run.ends, run.interval, run.sampler, run.phase = [], [], 0.05, None, "heal"
        return run

    def _workload_consumers(self):
        running = self.cluster.services.get("consumer")
        return running.consumers() if running is not None else []

    @property
    def env(self):
        return self.cluster.env

    def enter(self, phase):
        self.phase = phase
        if self.progress is not None:
            self.progress(phase, self.env.now)

    # ---- the phases --------------------------------------------------------------------------------------
    @fewer_collections()
    def finish(self, scenario=None):
        from .result import Result
        lab, env = self.cluster, self.env
        if self.phase == "workload":
            for name in self.sources:                                  # 1. the load and its faults
                env.run(until=lab.finished(name))
            if self.ends and env.now < max(self.ends):
                env.run(until=max(self.ends))
                while env._queue and env._queue[0][0] <= env.now:
                    env.step()                                 # the last fault itself strikes (or heals) first
            self.enter("drain")
            env.run(until=env.process(self.drained()))                #    ... until the groups caught up
        self.enter("heal")
        self.nemesis.heal_all()                                        # 2. heal what can heal
        # the final reader reads as the scenario's consumers are configured (downstream of a pipeline too)
        isolation = Config("consumer", CONSUMER, self.scenario.consumer if self.scenario else {})["isolation.level"]
        self.enter("catch-up")
        self.reader, self.caught_up, self.catch_up_time = None, None, 0.0
        env.run(until=self.catch_up(isolation))                       # 3. read everything that is there
        if self.sampler is not None:
            self.sampler.running = False
        self.enter("done")
        for invariant in self.invariants:
            invariant.check_run(self)
        return Result(self, scenario or (self.scenario.replace(seed=self.seed) if self.scenario else None))

    def drained(self):
        """SimPy process: ends when the groups have processed every acknowledged record of the load, or have
        read every partition up to its high watermark (records beyond it, or on a partition offline for good,
        cannot be read) and wait in poll() for more, or DRAIN_LIMIT passes."""
        env = self.env
        deadline = env.now + DRAIN_LIMIT
        consumers = [c for s in self.cluster.services.values() for c in s.consumers()]
        while consumers and env.now < deadline and self._unprocessed() and not self._read_all_readable():
            yield env.timeout(0.1)

    def _unprocessed(self) -> bool:
        """Does the load have acknowledged records the workload's group has not processed (True when there is no
        such bookkeeping: then only reading to the end counts)?"""
        load, group = self.cluster.services.get("producer"), self.cluster.services.get("consumer")
        plan = load.shared.get("plan") if load is not None else None
        if plan is None or group is None:
            return True
        processed = group.shared.get("processed")
        acked = plan.values[plan.acked]
        return processed is None and len(acked) > 0 or processed is not None and processed.missing(acked)

    def _read_all_readable(self) -> bool:
        kafka = self.cluster.kafka
        for service in self.cluster.services.values():
            members = service.consumers()
            topics = {t for c in members for t in c.membership.topics}
            for topic in sorted(topics):
                for tp in kafka.partitions(topic):
                    state = kafka.controller.partitions[tp]
                    if state.leader < 0 or not kafka.brokers[state.leader].up:
                        if self.offline_for_good(tp):
                            continue                    # nothing there will be readable again
                        return False                    # a leader is still to be elected: wait for it
                    hw = kafka.brokers[state.leader].replicas[tp].hw
                    owner = next((c for c in members if c.up and tp in c.positions), None)
                    if owner is None or (owner.positions[tp] or 0) < hw or not owner.waiting_in_poll:
                        return False            # (read, but maybe not yet processed: wait for the next poll)
        return True

    def user_topics(self) -> list[str]:
        return [t for t in self.cluster.kafka.topics if not t.startswith("__")]

    def catch_up(self, isolation_level: str):
        """A fresh consumer reads every user topic from the start to its end; returns the SimPy process."""
        lab = self.cluster
        # the final read is the checker's, not an application's: a super user, whatever the ACLs say
        reader = lab.consumer({"auto.offset.reset": "earliest", "isolation.level": isolation_level,
                               "edsim.principal": FINAL_READER_PRINCIPAL}, name="catch-up")
        tps = [tp for topic in self.user_topics() for tp in lab.kafka.partitions(topic)]
        reader.assign(tps)
        self.reader = reader
        return self.env.process(self._read_to_end(reader, tps))

    def offline_for_good(self, tp) -> bool:
        """No leader, and every broker that could lead it (``Controller.could_lead``) is down with no restart to
        come (the catch-up runs after every fault that can heal has healed): nothing will ever be read there, so
        the reader need not wait for it. A partition whose eligible brokers are up waits for them to be unfenced."""
        kafka = self.cluster.kafka
        state = kafka.controller.partitions[tp]
        return state.leader < 0 and not any(kafka.brokers[r].up for r in kafka.controller.could_lead(state))

    def _open_transactions_end(self) -> float:
        """When the transaction coordinators will have aborted every transaction still open (its
        transaction.timeout.ms, then up to one transaction.abort.timed.out.transaction.cleanup.interval.ms): until
        then a read_committed reader is held at the last stable offset, and what it has not read is late, not lost."""
        return max((b.txn_coordinator.all_aborted_by() for b in self.cluster.kafka.brokers.values() if b.up),
                   default=0.0)

    def _read_to_end(self, reader, tps):
        env = self.env
        start = env.now
        quiet_since = None
        self.caught_up = False
        deadline = max(start + CATCH_UP_LIMIT, self._open_transactions_end() + CATCH_UP_QUIET + 1.0)
        while env.now < deadline:
            records = yield from reader.poll(POLL_TIMEOUT)
            # read_committed stops at the last stable offset; an open transaction there is late, not lost: wait
            # until it commits or the coordinator aborts it (transaction.timeout.ms) and the end is the high watermark
            at_end = all(self.offline_for_good(tp) or (
                reader.fetched_at.get(tp, -1) > start and reader.fetched_at[tp] >= env.now - 1.0
                and (reader.position(tp) or 0) >= max(reader.end_offset(tp) or 0,
                                                      reader.high_watermarks.get(tp, 0))) for tp in tps)
            if len(records) or not at_end:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = env.now
            elif env.now - quiet_since >= CATCH_UP_QUIET:
                self.caught_up = True
                break
        self.catch_up_time = env.now - start
