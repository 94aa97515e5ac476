"""``workload={...}``: the scenario's one-line description of the services of chapters 3, 4 and 12 (a load, a
consumer group or a pipeline), expanded into ``apps`` services with the process names the notebooks use."""
from __future__ import annotations

from .configs import Config, ConfigError, Setting, _table, non_negative_int, non_negative_number, one_of, \
    positive_int, positive_number, probability


def _pipeline(key, value):
    if value is None:
        return None
    return one_of("at_least_once", "exactly_once_v2")(key, value)


def _name(key, value):
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}={value!r} is not allowed: {key} must be a non-empty string")
    return value


def _resend(key, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not allowed: {key} must be True or False")
    return value


WORKLOAD = _table(
    Setting("messages", 3000, non_negative_int, "records the application sends"),
    Setting("rate", 1000, positive_number, "records per simulated second (Poisson arrivals)"),
    Setting("keys", 10, non_negative_int, "distinct keys; 0 sends records without keys"),
    Setting("record_size", 100, positive_int, "bytes per record, for batch.size"),
    Setting("consumers", 1, non_negative_int, "consumers reading the topic"),
    Setting("processing_time", 0.0, non_negative_number, "seconds a consumer spends on each record"),
    Setting("commit", "auto", one_of("auto", "after-process", "before-process"),
            "auto: the consumer's auto-commit; after-process / before-process: commitSync after / before "
            "applying the records of a poll (auto-commit off)"),
    Setting("group", "edsim-workload", _name, "group.id of the workload's consumers"),
    Setting("transaction_size", 0, non_negative_int,
            "records per transaction of the producer (transactional.id 'edsim-producer' unless set); 0: none"),
    Setting("abort_ratio", 0.0, probability, "share of the producer's transactions it aborts"),
    Setting("pipeline", None, _pipeline,
            "None, or consume-transform-produce from the topic to '<topic>-out': 'at_least_once' (output "
            "acknowledged, then commitSync) or 'exactly_once_v2' (output and offsets in one transaction, KIP-447)"),
    Setting("commit_interval", 0.1, positive_number,
            "seconds a pipeline member consumes before it commits (Kafka Streams' commit.interval.ms: 100 ms "
            "under exactly_once_v2)"),
    Setting("resend_unacked", True, _resend,
            "after a producer restart the application sends again what it never saw acknowledged"),
)

def workload_config(given) -> Config:
    config = Config("workload", WORKLOAD, given)
    if config["pipeline"] is not None and config["consumers"] < 1:
        raise ConfigError(f"workload pipeline={config['pipeline']!r} is not allowed with consumers=0: the "
                          "pipeline's members are the workload's consumers")
    if config["abort_ratio"] > 0 and not config["transaction_size"]:
        raise ConfigError(f"workload abort_ratio={config['abort_ratio']} is not allowed with transaction_size=0: "
                          "only a transactional producer can abort")
    return config


def producer_settings(spec, given) -> dict:
    """The workload producer's config: a transactional.id when it writes in transactions."""
    config = dict(given or {})
    if spec["transaction_size"]:
        config.setdefault("transactional.id", "edsim-producer")
    return config


def pipeline_producer_settings(spec, given, i) -> dict:
    """Member ``i``'s producer: the scenario's producer settings, transactional under exactly_once_v2 (one
    transactional.id per member, as Kafka Streams' EOS v2 has one per thread)."""
    config = {k: v for k, v in (given or {}).items() if k != "transactional.id"}
    if spec["pipeline"] == "exactly_once_v2":
        config["transactional.id"] = f"edsim-pipeline-{i + 1}"
    return config


def workload_services(topic: str, spec, producer=None, consumer=None) -> dict:
    """The services ``workload={...}`` stands for, with today's process names: a ``Load`` named "producer", and
    the group's members "consumer-1", "consumer-2"... (a service called "consumer") running ``Consume`` or
    ``Pipeline``."""
    from .app.service import ServiceSpec
    from .apps import Consume, Load, Pipeline
    services = {"producer": ServiceSpec(Load, 1, options=dict(
        topic=topic, rate=spec["rate"], keys=spec["keys"], messages=spec["messages"],
        record_size=spec["record_size"], producer=producer_settings(spec, producer),
        transaction_size=spec["transaction_size"], abort_ratio=spec["abort_ratio"],
        resend_unacked=spec["resend_unacked"]), instance_names=["producer"])}
    n = spec["consumers"]
    group = (consumer or {}).get("group.id", spec["group"])
    if n and spec["pipeline"]:
        services["consumer"] = ServiceSpec(Pipeline, n, options=dict(
            topic=topic, output=f"{topic}-out", guarantee=spec["pipeline"], group=group,
            commit_interval=spec["commit_interval"], processing_time=spec["processing_time"],
            consumer=dict(consumer or {}), producer=dict(producer or {}), record_size=spec["record_size"],
            transactional_id_prefix="edsim-pipeline"))
    elif n:
        services["consumer"] = ServiceSpec(Consume, n, options=dict(
            topic=topic, group=group, commit=spec["commit"], processing_time=spec["processing_time"],
            consumer=dict(consumer or {})))
    return services
