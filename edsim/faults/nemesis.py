"""The nemesis: applies fault specs when their time comes, resolving "leader" and friends at that moment."""
from __future__ import annotations

from ..kafka.coordinator import OFFSETS_TOPIC, offsets_partition
from ..kafka.transactions import TXN_TOPIC
from .specs import Fault, FaultError

ROLE_TARGETS = ("leader", "followers")


class Nemesis:
    def __init__(self, world, kafka, topic: str):
        self.world = world
        self.kafka = kafka
        self.topic = topic
        self.groups: list[str] = []           # consumer groups, for the "coordinator" target
        self.txn_ids: list[str] = []          # transactional ids, for the "txn-coordinator" target
        self.active: list[list] = []          # [fault, undo, names]: faults in force that can heal
        self.applied: list[tuple] = []        # (time, fault, node names) for the record

    # ---- targets ----------------------------------------------------------------------------------------
    def _role(self, target):
        return role_target(target, self.topic, {t: c["partitions"] for t, c in self.kafka.topics.items()})

    def check_target(self, target):
        """Raise FaultError unless ``target`` means something in this world (the registry says what)."""
        check_target(target, self.world.names, list(self.kafka.brokers), self.topic,
                     {t: c["partitions"] for t, c in self.kafka.topics.items()}, self.groups, self.txn_ids)

    def resolve(self, target) -> list[str]:
        """The registered names ``target`` means right now (a role becomes the broker that holds it)."""
        if isinstance(target, int):
            return [f"broker-{target}"]
        for prefix, topic, keys in (("coordinator", OFFSETS_TOPIC, self.groups),
                                    ("txn-coordinator", TXN_TOPIC, self.txn_ids)):
            if str(target) == prefix or str(target).startswith(prefix + ":"):
                key = str(target).partition(":")[2] or (keys[0] if keys else None)
                if key is None or topic not in self.kafka.topics:
                    return []
                n = self.kafka.topics[topic]["partitions"]
                state = self.kafka.controller.partitions[(topic, offsets_partition(key, n))]
                return [f"broker-{state.leader}"] if state.leader >= 0 else []
        role = self._role(target)
        if role is not None:
            state = self.kafka.controller.partitions[role[1]]
            if role[0] == "leader":
                return [f"broker-{state.leader}"] if state.leader >= 0 else []
            return [f"broker-{r}" for r in state.replicas if r != state.leader]
        return [target]

    def _nodes(self, names) -> list[str]:
        """The network nodes behind registered names (a service instance speaks through its clients)."""
        out = []
        for name in names:
            entry = self.world.names.get(name)
            out += entry.node_names() if hasattr(entry, "node_names") else [name]
        return out

    # ---- scheduling -------------------------------------------------------------------------------------
    def schedule(self, fault: Fault):
        if not isinstance(fault, Fault):
            raise FaultError(f"{fault!r} is not a fault: build faults with edsim.faults.crash(...), isolate(...), "
                             "partition(...), pause(...), slow(...) or drop(...)")
        for target in fault.targets_named():
            self.check_target(target)
        now = self.world.now
        if fault.at < now:
            raise FaultError(f"at={fault.at} is not allowed: it is in the past (the simulation is at {now:.3f} s)")
        self.world.call_later(fault.at - now, self.apply, fault)

    def apply(self, fault: Fault):
        net = self.world.network
        nodes = self.world.nodes
        entries = self.world.names
        kind = fault.kind
        if kind == "partition":
            a = [n for t in fault.targets[0] for n in self.resolve(t)]
            b = [n for t in fault.targets[1] for n in self.resolve(t)]
            na, nb = self._nodes(a), self._nodes(b)
            links = [(x, y) for x in na for y in nb if x != y] + [(y, x) for x in na for y in nb if x != y]
            names = a + b
        elif kind == "isolate":
            names = self.resolve(fault.targets[0])
            mine = self._nodes(names)
            links = [(x, y) for x in mine for y in nodes if y not in mine] + \
                    [(y, x) for x in mine for y in nodes if y not in mine]
        elif kind == "drop":
            src, dst = self.resolve(fault.targets[0]), self.resolve(fault.targets[1])
            links = [(x, y) for x in self._nodes(src) for y in self._nodes(dst) if x != y]
            names = src + dst
        else:
            names = self.resolve(fault.targets[0])
            links = []
        self._record(fault, names)
        if not names:
            return
        if kind in ("partition", "isolate"):
            for link in links:
                net.block(*link)
            undo = lambda: [net.unblock(*link) for link in links]
        elif kind == "drop":
            for link in links:
                net.add_drop(*link, fault.probability)
            undo = lambda: [net.remove_drop(*link, fault.probability) for link in links]
        elif kind == "slow":
            slowed = self._nodes(names)
            for name in slowed:
                net.add_slow(name, fault.factor)
            undo = lambda: [net.remove_slow(name, fault.factor) for name in slowed]
        elif kind == "pause":
            for name in names:
                entries.get(name).pause()
            undo = lambda: [entries.get(name).resume() for name in names]
        elif kind == "crash":
            power_loss = fault.options.get("power_loss", False)
            for name in names:
                entries.get(name).crash(power_loss=power_loss)
            undo = lambda: [entries.get(name).restart() for name in names]
        else:  # pragma: no cover - specs only make the kinds above
            raise FaultError(f"unknown fault kind {kind!r}")
        entry = [fault, undo, names]
        if fault.duration is not None:
            self.active.append(entry)
            self.world.call_later(fault.duration, self._heal, entry)
        elif kind != "crash":
            self.active.append(entry)

    def _heal(self, entry):
        if entry in self.active:
            self.active.remove(entry)
            entry[1]()
            self.world.history.event(self.world.now, "nemesis", "fault", detail=f"heal {entry[0]!r}")

    def heal_all(self):
        """End every fault that can end (a crash without restart stays down), as a run's catch-up phase needs."""
        for entry in list(self.active):
            self._heal(entry)

    def _record(self, fault, names):
        self.applied.append((self.world.now, fault, tuple(names)))
        who = ", ".join(names) if names else "nobody (no such node right now)"
        self.world.history.event(self.world.now, "nemesis", "fault", detail=f"{fault!r} -> {who}")


def role_target(target, topic, partitions: dict):
    """("leader" | "followers", (topic, partition)) for a role target, None for any other target."""
    role, _, where = str(target).partition(":")
    if role not in ROLE_TARGETS or not isinstance(target, str):
        return None
    if not where:
        if topic is None:
            raise FaultError(f"target={target!r} is not allowed yet: it means the {role} of the workload topic's "
                             "partition 0, and there is no topic yet (create one first)")
        return role, (topic, 0)
    name, _, p = where.rpartition("-")
    if name not in partitions or not p.isdigit() or int(p) >= partitions[name]:
        raise FaultError(f"target={target!r} is not allowed: it names no partition; use '{role}:<topic>-<partition>' "
                         f"with a topic of {sorted(partitions)} and a partition number that exists")
    return role, (name, int(p))


def check_target(target, names, brokers, topic, partitions: dict, groups=(), txn_ids=(), expect_groups=False,
                 expect_txn=False):
    """Raise FaultError unless ``target`` names something a fault can hit: a broker id, a role, or a name the
    world's registry ``names`` knows (a standalone client, a service, a service instance). ``groups`` and
    ``txn_ids`` are those known so far; ``expect_*``: services may still open some (checked before a run)."""
    allowed = ", ".join(map(str, brokers))
    if isinstance(target, bool) or not isinstance(target, (int, str)):
        raise FaultError(f"target={target!r} is not allowed: a target is a broker id ({allowed}), 'leader', "
                         "'followers', 'leader:<topic>-<partition>', 'controller', a service or a client name")
    if isinstance(target, int):
        if target not in brokers:
            raise FaultError(f"target={target!r} is not allowed: broker ids are {allowed}")
        return
    has_groups, has_txn = bool(groups) or expect_groups, bool(txn_ids) or expect_txn
    if target == "coordinator" and has_groups or target.startswith("coordinator:") and (
            target[12:] in groups or expect_groups and target[12:]):
        return
    if target == "txn-coordinator" and has_txn or target.startswith("txn-coordinator:") and (
            target[16:] in txn_ids or expect_txn and target[16:]):
        return
    if role_target(target, topic, partitions) is not None or target == "controller":
        return
    if target in names and names.kind(target) in ("client", "service", "instance"):
        return
    processes = [n for n in names.names("client", "service", "instance")]
    described = (f"a broker id ({allowed}), 'leader', 'followers', 'leader:<topic>-<partition>', 'controller', "
                 + ("'coordinator' (of the consumer group, or 'coordinator:<group>'), " if has_groups else "")
                 + ("'txn-coordinator' (of the first transactional.id, or 'txn-coordinator:<id>'), " if has_txn
                    else "")
                 + f"or a service or client name ({', '.join(processes) or 'none yet'})")
    raise FaultError(names.unknown(target, described, ["leader", "followers"] + (["coordinator"] if has_groups else [])
                                   + (["txn-coordinator"] if has_txn else [])))
