"""How big and how long a run may be. Beyond these a laptop runs out of memory or the run never ends, so
``Scenario`` refuses them before anything runs, with the key, the value and the limit (``docs/options.md``).

Kafka itself allows more (its partitions per cluster run to hundreds of thousands); these are the simulation's
bounds, set well above what any chapter or exercise needs.
"""
from __future__ import annotations

from .configs import ConfigError

BROKERS = 100
PARTITIONS = 10_000                # per topic
MESSAGES = 10_000_000              # records the workload sends
INSTANCES = 1_000                  # consumers of the workload, instances of a service
KEYS = 2 ** 63 - 1                 # keys are drawn as 64-bit integers
SIMULATED_SECONDS = 86_400.0       # one simulated day: the load (messages / rate), every fault, linger.ms


def _refuse(key, value, limit, why):
    raise ConfigError(f"{key}={value!r} is not allowed: at most {limit:,} ({why})")


def check_sizes(brokers: int, partitions: dict, workload, instances: dict):
    """``partitions``: topic -> partition count; ``instances``: service name -> instances."""
    if brokers > BROKERS:
        _refuse("brokers", brokers, BROKERS, "edsim's limit on brokers per cluster")
    for topic, n in partitions.items():
        if n > PARTITIONS:
            _refuse(f"partitions of {topic}", n, PARTITIONS, "edsim's limit on partitions per topic")
    if workload["messages"] > MESSAGES:
        _refuse("workload messages", workload["messages"], MESSAGES, "a run keeps every record in memory")
    if workload["keys"] > KEYS:
        _refuse("workload keys", workload["keys"], KEYS, "keys are 64-bit integers")
    if workload["consumers"] > INSTANCES:
        _refuse("workload consumers", workload["consumers"], INSTANCES, "edsim's limit on a group's members")
    for name, n in instances.items():
        if n > INSTANCES:
            _refuse(f"service {name!r} instances", n, INSTANCES, "edsim's limit on a service's instances")


def check_times(workload, uses_workload: bool, faults, producer):
    """The load, the faults and the producer's linger must fit in one simulated day."""
    if uses_workload and workload["messages"]:
        load = workload["messages"] / workload["rate"]
        if load > SIMULATED_SECONDS:
            raise ConfigError(f"workload rate={workload['rate']!r} is not allowed with messages="
                              f"{workload['messages']}: the load would last {load:,.0f} simulated seconds, above "
                              f"edsim's limit of {SIMULATED_SECONDS:,.0f} (one day); raise the rate or send fewer")
    for fault in faults:
        end = fault.ends if fault.ends is not None else fault.at
        if end > SIMULATED_SECONDS:
            raise ConfigError(f"{fault!r} is not allowed: it ends {end:,} s into the run, above edsim's limit of "
                              f"{SIMULATED_SECONDS:,.0f} simulated seconds (one day)")
    if producer["linger.ms"] > SIMULATED_SECONDS * 1000:
        _refuse("linger.ms", producer["linger.ms"], int(SIMULATED_SECONDS * 1000),
                "one simulated day: a batch would wait beyond any run")

