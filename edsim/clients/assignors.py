"""Partition assignors, run by the group's leader member: range, round-robin and cooperative-sticky.

Each takes the members as ``(member_id, topics, owned)`` and the partition count of each topic, and returns
``member_id -> sorted partitions``. Cooperative-sticky (KIP-429) keeps what members own where the balance allows,
and leaves a partition that must move unassigned for one round: its owner revokes it first, and the follow-up
rebalance gives it to its new member, so no partition is ever owned by two members at once.
"""
from __future__ import annotations

EAGER = ("range", "roundrobin")


def range_assign(members, partitions):
    """RangeAssignor: per topic, consecutive partitions; the first ``n % m`` members take one more."""
    out = {m: [] for m, _t, _o in members}
    for topic in sorted(partitions):
        subscribers = sorted(m for m, topics, _o in members if topic in topics)
        if not subscribers:
            continue
        n = partitions[topic]
        share, extra = divmod(n, len(subscribers))
        start = 0
        for i, member in enumerate(subscribers):
            count = share + (1 if i < extra else 0)
            out[member].extend((topic, p) for p in range(start, start + count))
            start += count
    return {m: sorted(tps) for m, tps in out.items()}


def roundrobin_assign(members, partitions):
    """RoundRobinAssignor: every partition in turn to the next member subscribed to its topic."""
    out = {m: [] for m, _t, _o in members}
    ordered = sorted(members)
    i = 0
    for topic in sorted(partitions):
        for p in range(partitions[topic]):
            for _ in range(len(ordered)):
                member, topics, _o = ordered[i % len(ordered)]
                i += 1
                if topic in topics:
                    out[member].append((topic, p))
                    break
    return {m: sorted(tps) for m, tps in out.items()}


def cooperative_sticky_assign(members, partitions):
    """Balanced and sticky; a partition whose owner changes is withheld for one rebalance (KIP-429)."""
    ordered = sorted(members)
    all_tps = sorted((t, p) for t in sorted(partitions) for p in range(partitions[t])
                     if any(t in topics for _m, topics, _o in ordered))
    if not ordered:
        return {}
    share, extra = divmod(len(all_tps), len(ordered))
    quota = {m: share + (1 if i < extra else 0) for i, (m, _t, _o) in enumerate(ordered)}
    owner = {}
    known = set(all_tps)
    for m, topics, owned in ordered:
        for tp in sorted(owned):
            if tp in known and tp not in owner and tp[0] in topics:
                owner[tp] = m
    target = {m: [] for m, _t, _o in ordered}
    # members keep what they own, up to their quota (the most loaded give up their last partitions)
    for m, _t, _o in ordered:
        mine = sorted(tp for tp, o in owner.items() if o == m)
        target[m] = mine[:quota[m]]
    taken = {tp for tps in target.values() for tp in tps}
    free = [tp for tp in all_tps if tp not in taken]
    for m, topics, _o in ordered:
        while len(target[m]) < quota[m] and free:
            candidates = [tp for tp in free if tp[0] in topics]
            if not candidates:
                break
            target[m].append(candidates[0])
            free.remove(candidates[0])
    # withhold partitions still owned by someone else: they are revoked first
    return {m: sorted(tp for tp in tps if owner.get(tp, m) == m) for m, tps in target.items()}


ASSIGNORS = {"range": range_assign, "roundrobin": roundrobin_assign,
             "cooperative-sticky": cooperative_sticky_assign}
