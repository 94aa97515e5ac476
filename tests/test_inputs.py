"""Every bad input fails clearly, before a run starts where it can.

DESIGN.md: "Unknown names fail with the closest valid name suggested." The issue: "a value Kafka itself refuses
fails with a ValueError naming key, value and what is allowed." Nothing is silently clamped: each test checks the
parts of the message a learner needs (the key, the value as given, what is allowed).
"""
import re
import warnings

import pandas as pd
import pytest

import edsim
from edsim import faults
from edsim.clients import producer_config
from edsim.configs import ConfigError

SMALL = {"messages": 200}
DID_NOT_RAISE = pytest.fail.Exception       # what pytest.raises raises when nothing was raised


def parts(*fragments):
    """A regex for ``pytest.raises(match=...)`` that requires every fragment, in any order."""
    return "(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)


# ---- unknown names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("section, given, wrong, suggestion", [
    ("topic", {"replication_factor": 3}, "replication_factor", "replication.factor"),
    ("topic", {"partition": 3}, "partition", "partitions"),
    ("producer", {"ack": "all"}, "ack", "acks"),
    ("producer", {"enable.idempotency": True}, "enable.idempotency", "enable.idempotence"),
    ("producer", {"linger_ms": 5}, "linger_ms", "linger.ms"),
    ("consumer", {"isolation_level": "read_committed"}, "isolation_level", "isolation.level"),
    ("consumer", {"enable.autocommit": False}, "enable.autocommit", "enable.auto.commit"),
    ("broker", {"min.insync.replica": 2}, "min.insync.replica", "min.insync.replicas"),
    ("broker", {"unclean.leader.election": True}, "unclean.leader.election", "unclean.leader.election.enable"),
    ("workload", {"message": 200}, "message", "messages"),
    ("workload", {"rates": 100}, "rates", "rate"),
    ("producer", {"ACKS": "all"}, "ACKS", "acks"),                 # Kafka's names are lower case
    ("consumer", {"Max.Poll.Records": 10}, "Max.Poll.Records", "max.poll.records"),
])
def test_unknown_config_name_suggests_the_closest(section, given, wrong, suggestion):
    with pytest.raises(ValueError, match=parts(f"unknown {section} config {wrong!r}",
                                               f"did you mean {suggestion!r}?")):
        edsim.Scenario(**{section: given})


def test_unknown_name_without_a_close_one_lists_the_known_names():
    with pytest.raises(ValueError, match=parts("unknown producer config 'zzz'", "Known producer configs:",
                                               "acks", "enable.idempotence", "linger.ms")) as info:
        edsim.Scenario(producer={"zzz": 1})
    assert "did you mean" not in str(info.value)


def test_errors_are_edsim_config_errors_and_value_errors():
    with pytest.raises(edsim.ConfigError) as info:
        edsim.Scenario(producer={"ack": "all"})
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("wrong, right", [("produser", "producer"), ("topik", "topic"), ("fault", "faults")])
def test_unknown_scenario_argument_suggests_the_closest(wrong, right):
    with pytest.raises((TypeError, ValueError), match=parts(repr(wrong), f"did you mean {right!r}")):
        edsim.simulate(**{wrong: {}}, workload=SMALL)


@pytest.mark.parametrize("section", ["topic", "producer", "consumer", "broker", "workload"])
def test_a_section_that_is_not_a_dict(section):
    with pytest.raises(ValueError, match=parts(f"{section}='acks=all' is not allowed", "dict")):
        edsim.Scenario(**{section: "acks=all"})


# ---- Kafka's own rules -----------------------------------------------------------------------------------
def test_replication_factor_above_brokers_is_invalid_replication_factor():
    with pytest.raises(ValueError, match=parts("replication.factor=4", "at most the number of brokers (3)",
                                               "INVALID_REPLICATION_FACTOR")):
        edsim.Scenario(brokers=3, topic={"replication.factor": 4})


def test_default_replication_factor_needs_three_brokers():
    with pytest.raises(ValueError, match=parts("replication.factor=3", "number of brokers (1)",
                                               "INVALID_REPLICATION_FACTOR")):
        edsim.Scenario(brokers=1)
    assert edsim.Scenario(brokers=1, topic={"replication.factor": 1}).brokers == 1


@pytest.mark.parametrize("value", ["2", 2, "none", "", -2, 0.5, True, None])
def test_acks_outside_0_1_all_minus_1(value):
    with pytest.raises(ValueError, match=parts(f"acks={value!r} is not allowed", "'0'", "'1'", "'all'", "'-1'")):
        edsim.Scenario(producer={"acks": value})


@pytest.mark.parametrize("value, kept", [("-1", "all"), (-1, "all"), ("all", "all"), (0, "0"), ("0", "0"),
                                         (1, "1"), ("1", "1")])
def test_acks_accepts_numbers_and_minus_1_as_all(value, kept):
    config, _ = producer_config({"acks": value})
    assert config["acks"] == kept
    edsim.Scenario(producer={"acks": value})


@pytest.mark.parametrize("value", [-1, "-1"])
def test_acks_minus_1_satisfies_explicit_idempotence(value):
    config, notes = producer_config({"acks": value, "enable.idempotence": True})
    assert (config["acks"], config["enable.idempotence"], notes) == ("all", True, [])


@pytest.mark.parametrize("section, key, value", [("producer", "acks", "ALL"),
                                                 ("consumer", "isolation.level", "READ_COMMITTED")])
def test_values_kafka_refuses_by_case(section, key, value):
    with pytest.raises(ValueError, match=parts(f"{key}={value!r} is not allowed")):
        edsim.Scenario(**{section: {key: value}})


@pytest.mark.parametrize("section, key, value, allowed", [
    ("producer", "linger.ms", -1, "a number >= 0"),
    ("producer", "delivery.timeout.ms", -5, "a number >= 0"),
    ("producer", "request.timeout.ms", 0, "a number > 0"),
    ("producer", "retries", -1, "a whole number >= 0"),
    ("producer", "batch.size", 0, "a whole number >= 1"),
    ("producer", "max.in.flight.requests.per.connection", 0, "a whole number >= 1"),
    ("producer", "batch.size", 1.5, "a whole number >= 1"),
    ("producer", "linger.ms", float("nan"), "a number >= 0"),
    ("topic", "partitions", 0, "a whole number >= 1"),
    ("topic", "partitions", -3, "a whole number >= 1"),
    ("topic", "replication.factor", 0, "a whole number >= 1"),
    ("topic", "min.insync.replicas", 0, "a whole number >= 1"),
    ("consumer", "session.timeout.ms", -1, "a number > 0"),
    ("consumer", "max.poll.records", 0, "a whole number >= 1"),
    ("consumer", "fetch.max.wait.ms", -500, "a number >= 0"),
    ("broker", "replica.lag.time.max.ms", -1, "a number >= 0"),
    ("broker", "broker.session.timeout.ms", 0, "a number > 0"),
    ("workload", "messages", -5, "a whole number >= 0"),
    ("workload", "rate", 0, "a number > 0"),
    ("workload", "rate", -100, "a number > 0"),
    ("workload", "keys", -1, "a whole number >= 0"),
    ("workload", "consumers", -1, "a whole number >= 0"),
    ("workload", "processing_time", -0.5, "a number >= 0"),
    ("workload", "abort_ratio", 1.5, "a probability between 0 and 1"),
])
def test_negative_and_zero_times_and_counts(section, key, value, allowed):
    with pytest.raises(ValueError, match=parts(f"{key}={value!r} is not allowed", f"{key} must be {allowed}")):
        edsim.Scenario(**{section: {key: value}})


@pytest.mark.parametrize("section, key", [
    ("topic", "partitions"), ("topic", "replication.factor"), ("producer", "linger.ms"), ("producer", "retries"),
    ("producer", "batch.size"), ("consumer", "max.poll.records"), ("broker", "replica.lag.time.max.ms"),
    ("workload", "messages"), ("workload", "rate"), ("workload", "keys"), ("workload", "abort_ratio"),
])
@pytest.mark.parametrize("value", [True, False])
def test_bool_where_a_number_is_wanted(section, key, value):
    with pytest.raises(ValueError, match=parts(f"{key}={value!r} is not allowed", f"{key} must be")):
        edsim.Scenario(**{section: {key: value}})


@pytest.mark.parametrize("value", ["5", [5], None])
def test_non_numbers_where_a_number_is_wanted(value):
    with pytest.raises(ValueError, match=parts(f"linger.ms={value!r} is not allowed", "a number >= 0")):
        edsim.Scenario(producer={"linger.ms": value})


def test_infinite_linger_is_refused():
    with pytest.raises(ValueError, match=parts("linger.ms=inf is not allowed")):
        edsim.Scenario(producer={"linger.ms": float("inf")})


@pytest.mark.parametrize("section, key, value, allowed", [
    ("producer", "enable.idempotence", "yes", "true or false"),
    ("producer", "enable.idempotence", 1, "true or false"),
    ("consumer", "enable.auto.commit", "on", "true or false"),
    ("consumer", "isolation.level", "read_comitted", "one of 'read_uncommitted', 'read_committed'"),
    ("consumer", "auto.offset.reset", "smallest", "one of 'earliest', 'latest', 'none'"),
    ("broker", "edsim.legacy.truncation", "hw", "one of 'leader-epoch', 'high-watermark'"),
    ("workload", "commit", "never", "one of 'auto', 'after-process', 'before-process'"),
])
def test_values_outside_the_allowed_set(section, key, value, allowed):
    with pytest.raises(ValueError, match=parts(f"{key}={value!r} is not allowed", allowed)):
        edsim.Scenario(**{section: {key: value}})


@pytest.mark.parametrize("value", [0, -1, 2.0, "3", True, None])
def test_brokers_must_be_a_whole_number_of_at_least_one(value):
    with pytest.raises(ValueError, match=parts(f"brokers={value!r} is not allowed", "whole number >= 1")):
        edsim.Scenario(brokers=value, topic={"replication.factor": 1})


@pytest.mark.parametrize("value", ["7", 1.5, None, True])
def test_seed_must_be_an_int(value):
    with pytest.raises(ValueError, match=parts(f"seed={value!r} is not allowed", "whole number")):
        edsim.Scenario(seed=value)


@pytest.mark.parametrize("value", ["7", 2.5, False])
def test_run_seed_must_be_an_int(value):
    scenario = edsim.Scenario(workload=SMALL)
    with pytest.raises(ValueError, match=parts(f"seed={value!r} is not allowed", "whole number")):
        scenario.run(seed=value)


@pytest.mark.parametrize("name", ["", 5])
def test_topic_name_must_be_a_non_empty_string(name):
    with pytest.raises(ValueError, match=parts(f"name={name!r} is not allowed", "non-empty string")):
        edsim.Scenario(topic={"name": name})


# ---- idempotence and delivery.timeout.ms, as ProducerConfig / KafkaProducer check them ---------------------
@pytest.mark.parametrize("given, conflict", [
    ({"acks": "1"}, "acks=1"),
    ({"acks": 0}, "acks=0"),
    ({"max.in.flight.requests.per.connection": 6}, "max.in.flight.requests.per.connection=6"),
    ({"retries": 0}, "retries=0"),
])
@pytest.mark.parametrize("idempotence", [True, "true"])
def test_explicit_idempotence_with_a_conflicting_setting_is_a_config_exception(given, conflict, idempotence):
    with pytest.raises(ValueError, match=parts("enable.idempotence=true is not allowed", conflict,
                                               "ConfigException")):
        edsim.Scenario(producer={"enable.idempotence": idempotence, **given})


def test_idempotence_not_set_is_turned_off_with_a_note():
    """ProducerConfig: when enable.idempotence is not set and acks != all, idempotence is quietly disabled."""
    config, notes = producer_config({"acks": "1"})
    assert config["enable.idempotence"] is False
    assert len(notes) == 1 and "enable.idempotence was not set" in notes[0] and "acks=1" in notes[0]

    result = edsim.simulate(producer={"acks": "1"}, workload=SMALL, seed=3)
    assert any("enable.idempotence was not set" in n and "acks=1" in n for n in result.notes)
    summary = result.summary()
    assert "idempotence=false" in summary.loc["setup", "value"]
    notes_shown = summary.loc[summary.index == "note", "value"].tolist()
    assert any("Kafka turns idempotence off" in n for n in notes_shown)


def test_explicit_idempotence_false_with_acks_1_has_no_note():
    config, notes = producer_config({"acks": "1", "enable.idempotence": False})
    assert config["enable.idempotence"] is False and notes == []


def test_delivery_timeout_below_linger_plus_request_timeout_when_explicit():
    with pytest.raises(ValueError, match=parts("delivery.timeout.ms=1000 is not allowed",
                                               "at least linger.ms + request.timeout.ms = 30005")):
        edsim.Scenario(producer={"delivery.timeout.ms": 1000})
    with pytest.raises(ValueError, match=parts("delivery.timeout.ms=1099 is not allowed", "= 1100")):
        edsim.Scenario(producer={"delivery.timeout.ms": 1099, "linger.ms": 100, "request.timeout.ms": 1000})
    config, notes = producer_config({"delivery.timeout.ms": 1100, "linger.ms": 100, "request.timeout.ms": 1000})
    assert config["delivery.timeout.ms"] == 1100 and notes == []


def test_delivery_timeout_not_explicit_is_raised_with_a_note():
    """KafkaProducer.configureDeliveryTimeout: a default delivery.timeout.ms below linger + request timeout
    is raised to that sum (with a warning), not refused."""
    config, notes = producer_config({"request.timeout.ms": 200000})
    assert config["delivery.timeout.ms"] == 200005
    assert notes == ["delivery.timeout.ms raised to linger.ms + request.timeout.ms = 200005, as Kafka does"]


def test_transactional_id_needs_idempotence():
    with pytest.raises(ValueError, match=parts("transactional.id", "enable.idempotence=false")):
        edsim.Scenario(producer={"transactional.id": "tx-1", "enable.idempotence": False})


# ---- min.insync.replicas above the replica count (Kafka >= 3.7 caps it; apache/kafka PR #14594) ------------
def _run_quietly(scenario):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", edsim.EdsimWarning)
        return scenario.run()


@pytest.mark.parametrize("where", ["topic", "broker"])
def test_min_insync_above_replication_factor_is_accepted_warns_and_acts_as_the_cap(where):
    scenario = edsim.Scenario(producer={"acks": "all"}, workload=SMALL, seed=5,
                              **{where: {"min.insync.replicas": 5}})
    with pytest.warns(edsim.EdsimWarning, match=parts("min.insync.replicas=5", "replication.factor=3",
                                                      "PR #14594")):
        result = scenario.run()
    counts = result.counts()
    assert counts["acknowledged"] == SMALL["messages"] == counts["records sent"]
    assert result.producer_errors.get("NOT_ENOUGH_REPLICAS", 0) == 0
    assert sum(result.anomalies.values()) == 0
    capped = _run_quietly(scenario.replace(**{f"{where}.min.insync.replicas": 3}))
    pd.testing.assert_frame_equal(result.history, capped.history)


# ---- faults ----------------------------------------------------------------------------------------------
def test_unknown_broker_id_fails_when_the_run_resolves_it():
    with pytest.raises(ValueError, match=parts("target=7 is not allowed", "broker ids are 1, 2, 3")):
        edsim.simulate(workload=SMALL, faults=[faults.crash(7, at=1.0)])


def test_broker_id_zero_is_not_a_broker():
    with pytest.raises(ValueError, match=parts("target=0 is not allowed", "broker ids are 1, 2, 3")):
        edsim.simulate(workload=SMALL, faults=[faults.isolate(0, at=1.0, heal_after=1.0)])


def test_unknown_named_target_lists_what_is_allowed():
    with pytest.raises(ValueError, match=parts("target='leaderr' is not allowed", "'leader'", "'followers'",
                                               "'controller'", "producer, consumer, consumer-1")):
        edsim.simulate(workload=SMALL, faults=[faults.crash("leaderr", at=1.0)])


def test_unknown_client_target_lists_the_clients():
    with pytest.raises(ValueError, match=parts("target='consumer-3' is not allowed", "did you mean 'consumer-1'",
                                                  "producer, consumer, consumer-1")):
        edsim.simulate(workload=SMALL, faults=[faults.pause("consumer-3", at=1.0, duration=1.0)])


def test_leader_of_a_partition_that_does_not_exist():
    with pytest.raises(ValueError, match=parts("'leader:events-5'", "names no partition", "['events']")):
        edsim.simulate(workload=SMALL, faults=[faults.crash("leader:events-5", at=1.0)])


def test_unknown_target_in_a_partition_side():
    with pytest.raises(ValueError, match=parts("target=9 is not allowed", "broker ids are 1, 2, 3")):
        edsim.simulate(workload=SMALL, faults=[faults.partition([1], [2, 9], at=1.0, heal_after=1.0)])


@pytest.mark.parametrize("fault, shown", [(faults.crash(7, at=1.0), "target=7"),
                                          (faults.crash("leaderr", at=1.0), "target='leaderr'")])
def test_unknown_target_fails_when_the_scenario_is_built(fault, shown):
    with pytest.raises(ValueError, match=parts(shown, "is not allowed")):
        edsim.Scenario(brokers=3, faults=[fault])


@pytest.mark.parametrize("wrong, right", [("leaderr", "leader"), ("follower", "followers"),
                                          ("controler", "controller"), ("producr", "producer")])
def test_misspelt_fault_target_suggests_the_closest(wrong, right):
    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("events")
    cluster.producer()
    with pytest.raises(ValueError, match=parts(f"target={wrong!r}", f"did you mean {right!r}")):
        cluster.inject(faults.crash(wrong, at=1.0))


@pytest.mark.parametrize("make, key, value", [
    (lambda: faults.isolate(1, at=1.0, heal_after=0), "heal_after", 0),
    (lambda: faults.isolate(1, at=1.0, heal_after=-2), "heal_after", -2),
    (lambda: faults.partition([1], [2, 3], at=1.0, heal_after=0), "heal_after", 0),
    (lambda: faults.partition([1], [2, 3], at=1.0, heal_after=-1.5), "heal_after", -1.5),
    (lambda: faults.crash(1, at=1.0, restart_after=0), "restart_after", 0),
    (lambda: faults.crash(1, at=1.0, restart_after=-1), "restart_after", -1),
    (lambda: faults.pause(1, at=1.0, duration=0), "duration", 0),
    (lambda: faults.slow(1, at=1.0, factor=2, duration=-1), "duration", -1),
    (lambda: faults.drop(1, 2, 0.5, at=1.0, duration=0), "duration", 0),
])
def test_heal_before_start(make, key, value):
    with pytest.raises(ValueError, match=parts(f"{key}={value!r} is not allowed", "> 0",
                                               "counted from `at`")):
        make()


@pytest.mark.parametrize("value", [-1, -0.001, float("nan"), "1", True, None])
def test_fault_time_before_the_start_or_not_a_number(value):
    with pytest.raises(ValueError, match=parts(f"at={value!r} is not allowed", "seconds >= 0")):
        faults.crash("leader", at=value)


@pytest.mark.parametrize("make, key", [(lambda: faults.crash(1, at=float("inf")), "at"),
                                       (lambda: faults.crash(1, at=1.0, restart_after=float("inf")),
                                        "restart_after")], ids=["at", "restart_after"])
def test_infinite_fault_times_are_refused(make, key):
    with pytest.raises(ValueError, match=parts(f"{key}=inf is not allowed")):
        make()


def test_fault_earlier_than_the_current_simulated_time():
    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("events")
    cluster.run(until=2)
    with pytest.raises(ValueError, match=parts("at=1.0 is not allowed", "in the past",
                                               "the simulation is at 2.000 s")):
        cluster.inject(faults.crash(1, at=1.0, restart_after=1.0))
    cluster.inject(faults.crash(1, at=2.0, restart_after=1.0))     # now is allowed
    cluster.run(until=2.5)
    assert [(t, names) for t, _, names in cluster.nemesis().applied] == [(2.0, ("broker-1",))]


def test_cluster_inject_checks_targets_at_once():
    cluster = edsim.Cluster(brokers=3, seed=1)
    cluster.create_topic("events")
    with pytest.raises(ValueError, match=parts("target=4 is not allowed", "broker ids are 1, 2, 3")):
        cluster.inject(faults.crash(4, at=1.0))


def test_leader_target_without_a_topic_fails_at_inject():
    cluster = edsim.Cluster(brokers=3, seed=1)
    with pytest.raises(ValueError, match=parts("'leader'", "topic")):
        cluster.inject(faults.crash("leader", at=1.0))
        cluster.run(until=2)


@pytest.mark.parametrize("probability", [1.5, -0.1, 2, True, "0.5", None])
def test_drop_probability_outside_0_1(probability):
    with pytest.raises(ValueError, match=parts(f"probability={probability!r} is not allowed",
                                               "between 0 and 1")):
        faults.drop("producer", "leader", probability, at=1.0, duration=1.0)


@pytest.mark.parametrize("probability", [0, 1, 0.25])
def test_drop_probability_bounds_are_kept_as_given(probability):
    assert faults.drop(1, 2, probability, at=0, duration=1).probability == probability


@pytest.mark.parametrize("factor", [0.5, 0, -2, 0.999, True, None, "3"])
def test_slow_factor_below_one(factor):
    with pytest.raises(ValueError, match=parts(f"factor={factor!r} is not allowed", "a number >= 1")):
        faults.slow("leader", at=1.0, factor=factor, duration=1.0)


def test_slow_factor_one_is_kept():
    assert faults.slow(1, at=0, factor=1, duration=1).factor == 1.0


@pytest.mark.parametrize("target", [True, None, 1.5, "", ["leader"]])
def test_target_of_the_wrong_type(target):
    with pytest.raises(ValueError, match=parts(f"target={target!r} is not allowed", "broker id", "'leader'")):
        faults.crash(target, at=1.0)


def test_partition_side_must_not_be_empty():
    with pytest.raises(ValueError, match=parts("side_a=[] is not allowed", "at least one target")):
        faults.partition([], [1], at=1.0)


@pytest.mark.parametrize("thing", ["crash leader at 1", {"kind": "crash", "target": "leader"}, None, 3])
def test_non_fault_object_in_faults(thing):
    with pytest.raises(ValueError, match=parts(f"{thing!r} is not a fault", "edsim.faults.crash(...)")):
        edsim.Scenario(faults=[faults.crash(1, at=1.0), thing])


def test_a_single_fault_not_in_a_list():
    with pytest.raises(ValueError, match=parts("faults=", "list")):
        edsim.Scenario(faults=faults.crash("leader", at=1.0))


# ---- Scenario.replace --------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, shown, suggestion", [
    ({"sed": 3}, "unknown scenario config 'sed'", "did you mean 'seed'?"),
    ({"broker_count": 5}, "unknown scenario config 'broker_count'", "Known scenario configs"),
    ({"workloads": {}}, "unknown scenario config 'workloads'", "did you mean 'workload'?"),
    ({"produce.acks": "1"}, "unknown scenario config 'produce.acks'", "did you mean 'producer"),
    ({"producer.ack": "1"}, "unknown producer config 'ack'", "did you mean 'acks'?"),
    ({"topic.replication_factor": 2}, "unknown topic config 'replication_factor'",
     "did you mean 'replication.factor'?"),
])
def test_replace_with_an_unknown_name(changes, shown, suggestion):
    scenario = edsim.Scenario(workload=SMALL)
    with pytest.raises(ValueError, match=parts(shown, suggestion)):
        scenario.replace(**changes)


def test_replace_checks_values_and_leaves_the_original_alone():
    scenario = edsim.Scenario(producer={"acks": "all"}, workload=SMALL)
    with pytest.raises(ValueError, match=parts("acks='2' is not allowed")):
        scenario.replace(**{"producer.acks": "2"})
    with pytest.raises(ValueError, match=parts("replication.factor=5", "INVALID_REPLICATION_FACTOR")):
        scenario.replace(**{"topic.replication.factor": 5})
    assert scenario.producer == {"acks": "all"} and scenario.topic == {}
    changed = scenario.replace(**{"producer.acks": "1"}, seed=4)
    assert (changed.producer, changed.seed, scenario.seed) == ({"acks": "1"}, 4, 0)


@pytest.mark.parametrize("section, key", [("producer", "batch.size"), ("topic", "partitions"),
                                          ("consumer", "max.poll.records"), ("producer", "retries")])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_for_a_whole_number_setting_name_the_key(section, key, value):
    """NaN and infinities raised Python's own "cannot convert float NaN to integer" or OverflowError, without
    the key; they are refused as any other value that is not a whole number."""
    with pytest.raises(edsim.ConfigError, match=parts(f"{key}={value!r} is not allowed", "a whole number")):
        edsim.Scenario(**{section: {key: value}})


def test_numpy_numbers_are_numbers():
    """A seed or a setting computed with numpy (np.int64 is not a Python int) is accepted, as Python's own."""
    import numpy as np
    assert edsim.Scenario(seed=np.int64(3)).seed == 3 and type(edsim.Scenario(seed=np.int64(3)).seed) is int
    result = edsim.simulate(seed=np.int64(3), producer={"linger.ms": np.float64(2.0)},
                            consumer={"max.poll.records": np.int64(50)}, workload={"messages": 100})
    assert result.seed == 3 and result.counts()["acknowledged"] == 100
    with pytest.raises(edsim.ConfigError, match="seed=True is not allowed"):
        edsim.Scenario(seed=True)


# ---- sizes and times a run could not finish (issue "Nothing hangs" item 7) ----------------------------------------

@pytest.mark.parametrize("given, says", [
    (dict(workload={"messages": 10 ** 12}), "workload messages=1000000000000 is not allowed: at most 10,000,000"),
    (dict(workload={"keys": 2 ** 64}), "workload keys=18446744073709551616 is not allowed"),
    (dict(brokers=10 ** 6, topic={"replication.factor": 1}), "brokers=1000000 is not allowed: at most 100"),
    (dict(workload={"consumers": 10 ** 6}), "workload consumers=1000000 is not allowed: at most 1,000"),
    (dict(topic={"partitions": 10 ** 7}), "partitions of events=10000000 is not allowed: at most 10,000"),
    (dict(workload={"rate": 1e-9}), "workload rate=1e-09 is not allowed with messages=3000: the load would last"),
    (dict(faults=[faults.crash(1, at=1e12)]), r"faults.crash\(1, at=1000000000000.0\) is not allowed: it ends"),
    (dict(faults=[faults.pause(1, at=1.0, duration=1e9)]), "above edsim's limit of 86,400 simulated seconds"),
    (dict(producer={"linger.ms": 1e15}), "linger.ms=1000000000000000.0 is not allowed: at most 86,400,000"),
])
def test_what_a_run_could_not_finish_is_refused_with_the_key_and_the_limit(given, says):
    with pytest.raises(ConfigError, match=says):
        edsim.Scenario(**given)


def test_a_service_with_more_instances_than_the_limit_is_refused():
    from edsim.apps import Consume
    with pytest.raises(ConfigError, match="service 'audit' instances=1001 is not allowed: at most 1,000"):
        edsim.Scenario(services={"audit": edsim.service(Consume, instances=1001)}, topics={"events": {}})


def test_the_cost_of_keys_follows_how_many_there_are_not_how_large():
    """keys=10**18 hashes each distinct key drawn once (before: a table up to the largest key, out of memory)."""
    small = edsim.simulate(workload={"messages": 300, "keys": 10}, seed=1)
    large = edsim.simulate(workload={"messages": 300, "keys": 10 ** 18}, seed=1)
    assert large.history.query("f == 'send'")["key"].nunique() == 300 > small.history.query("f == 'send'")["key"].nunique()
    assert large.anomalies["lost-write"] == 0


# ---- accepted silently before (item 9) ------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("request.timeout.ms", 1), ("heartbeat.interval.ms", 1e-6)])
def test_client_timers_below_the_clients_tick_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"{key}=.* is not allowed: at least 100 ms; edsim's clients look at their "
                                          "timers every 100 ms"):
        edsim.Scenario(consumer={key: value})


def test_an_infinitely_slow_link_is_refused():
    with pytest.raises(edsim.FaultError, match="factor=inf is not allowed: factor must be a number >= 1, finite"):
        faults.slow(1, at=1.0, factor=float("inf"), duration=1.0)


def test_records_larger_than_max_request_size_are_refused_as_kafka_refuses_every_such_send():
    with pytest.raises(ConfigError, match="record_size=1000000000 is not allowed with max.request.size=1048576: "
                                          "Kafka's producer fails every such send with RecordTooLargeException"):
        edsim.Scenario(workload={"record_size": 10 ** 9})
