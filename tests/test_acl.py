"""Access control (edsim/kafka/acl.py) against Kafka's documented rules.

Sources: https://kafka.apache.org/documentation/#security_authz (ACLs, super.users,
allow.everyone.if.no.acl.found), KIP-290 (prefixed ACLs), org.apache.kafka.metadata.authorizer.StandardAuthorizerData
(DENY wins; ALLOW of READ/WRITE/DELETE/ALTER implies DESCRIBE; no ACL on the resource -> the default rule),
KafkaApis (which operation each request needs, and the error a denied one gets).
"""
import hashlib

import pytest

import edsim
from edsim.clients import FatalConsumerError, KafkaError
from edsim.configs import BROKER, Config
from edsim.kafka.acl import AclBinding, Authorizer

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
AUTH = {"authorizer.class.name": STANDARD}


def authorizer(*acls, **broker):
    return Authorizer(Config("broker", BROKER, {**AUTH, **broker}), acls)


# ---- the authorizer's rules ------------------------------------------------------------------------------------
def test_without_an_authorizer_everything_is_allowed():
    a = Authorizer(Config("broker", BROKER, {}), [edsim.acl("User:bob", "ALL", topic="*", permission_type="DENY")])
    assert a.authorize("User:bob", "WRITE", "TOPIC", "orders")
    assert a.authorize("User:ANONYMOUS", "READ", "GROUP", "g")


def test_a_resource_no_acl_matches_is_denied_unless_allow_everyone_if_no_acl_found():
    a = authorizer(edsim.acl("User:alice", "READ", topic="payments"))
    assert not a.authorize("User:alice", "READ", "TOPIC", "orders")          # no ACL on "orders": denied
    b = authorizer(edsim.acl("User:alice", "READ", topic="payments"), **{"allow.everyone.if.no.acl.found": True})
    assert b.authorize("User:bob", "WRITE", "TOPIC", "orders")               # no ACL on it: everyone
    # ... but a resource that has ACLs is closed to everyone they do not name, whatever that setting says
    assert not b.authorize("User:bob", "READ", "TOPIC", "payments")


def test_literal_acls_match_the_name_exactly_and_star_matches_every_name():
    a = authorizer(edsim.acl("User:alice", "READ", topic="orders"))
    assert a.authorize("User:alice", "READ", "TOPIC", "orders")
    assert not a.authorize("User:alice", "READ", "TOPIC", "orders-eu")       # a literal name is not a prefix
    assert not a.authorize("User:alice", "READ", "GROUP", "orders")          # nor another resource type
    star = authorizer(edsim.acl("User:alice", "READ", topic="*"))
    assert star.authorize("User:alice", "READ", "TOPIC", "anything")


def test_prefixed_acls_match_every_name_that_starts_with_the_prefix():
    """KIP-290: PREFIXED "orders." covers orders.eu and orders.us, not orders or payments."""
    a = authorizer(edsim.acl("User:alice", "WRITE", topic="orders.", pattern_type="PREFIXED"))
    assert a.authorize("User:alice", "WRITE", "TOPIC", "orders.eu")
    assert a.authorize("User:alice", "WRITE", "TOPIC", "orders.")
    assert not a.authorize("User:alice", "WRITE", "TOPIC", "orders")
    assert not a.authorize("User:alice", "WRITE", "TOPIC", "payments")


def test_deny_wins_over_allow():
    a = authorizer(edsim.acl("User:*", "READ", topic="orders"),
                   edsim.acl("User:mallory", "READ", topic="orders", permission_type="DENY"))
    assert a.authorize("User:alice", "READ", "TOPIC", "orders")              # User:* allows everyone...
    assert not a.authorize("User:mallory", "READ", "TOPIC", "orders")        # ...but the DENY wins
    prefixed = authorizer(edsim.acl("User:bob", "ALL", topic="orders"),
                          edsim.acl("User:bob", "WRITE", topic="ord", pattern_type="PREFIXED", permission_type="DENY"))
    assert not prefixed.authorize("User:bob", "WRITE", "TOPIC", "orders")    # a prefixed DENY beats a literal ALLOW
    assert prefixed.authorize("User:bob", "READ", "TOPIC", "orders")


def test_read_and_write_imply_describe_but_a_deny_denies_only_what_it_names():
    a = authorizer(edsim.acl("User:alice", "READ", topic="t"), edsim.acl("User:bob", "WRITE", topic="t"))
    assert a.authorize("User:alice", "DESCRIBE", "TOPIC", "t")
    assert a.authorize("User:bob", "DESCRIBE", "TOPIC", "t")
    assert not a.authorize("User:alice", "WRITE", "TOPIC", "t")              # READ does not imply WRITE
    assert not a.authorize("User:bob", "READ", "TOPIC", "t")
    d = authorizer(edsim.acl("User:carol", "ALL", topic="t"),
                   edsim.acl("User:carol", "READ", topic="t", permission_type="DENY"))
    assert d.authorize("User:carol", "DESCRIBE", "TOPIC", "t")               # DENY READ does not deny DESCRIBE
    assert d.authorize("User:carol", "WRITE", "TOPIC", "t")                  # ALL covers every operation
    assert not d.authorize("User:carol", "READ", "TOPIC", "t")


def test_super_users_may_do_anything():
    a = authorizer(edsim.acl("User:admin", "ALL", topic="*", permission_type="DENY"),
                   **{"super.users": "User:admin;User:ops"})
    assert a.authorize("User:admin", "WRITE", "TOPIC", "orders")
    assert a.authorize("User:ops", "READ", "GROUP", "g")
    assert not a.authorize("User:other", "READ", "GROUP", "g")
    assert a.authorize("User:broker", "READ", "TOPIC", "orders")             # the brokers' own principal


def test_acls_can_be_added_and_removed_on_a_running_cluster():
    cluster = edsim.Cluster(3, broker=AUTH)
    rule = edsim.acl("User:alice", "WRITE", topic="orders")
    cluster.acls.add(rule, rule)
    assert cluster.acls.list() == [rule]
    assert cluster.acls.authorize("User:alice", "WRITE", "TOPIC", "orders")
    cluster.acls.remove(rule)
    assert not cluster.acls.authorize("User:alice", "WRITE", "TOPIC", "orders")


# ---- requests: what clients see --------------------------------------------------------------------------------
def _history_hash(**kw):
    return hashlib.sha256(edsim.simulate(**kw).history.to_csv().encode()).hexdigest()


def test_acls_without_an_authorizer_change_nothing():
    """ACLs are judged only once authorizer.class.name is set: the history is the same row for row."""
    plain = _history_hash(workload={"messages": 300, "rate": 300, "consumers": 2}, seed=1)
    acls = _history_hash(workload={"messages": 300, "rate": 300, "consumers": 2}, seed=1,
                         acls=[edsim.acl("User:*", "ALL", topic="*", permission_type="DENY")])
    assert plain == acls


def test_a_producer_denied_write_fails_its_records_at_once_with_topic_authorization_failed():
    """Produce needs WRITE on the topic; TOPIC_AUTHORIZATION_FAILED is not retriable: the records fail, none is
    written, and they fail at once, not after delivery.timeout.ms. DESCRIBE alone lets the producer find the
    leaders, so this is the broker's answer to the Produce request itself."""
    result = edsim.simulate(broker=AUTH, workload={"messages": 200, "rate": 400, "consumers": 0},
                            producer={"edsim.principal": "User:mallory"},
                            acls=[edsim.acl("User:mallory", "DESCRIBE", topic="events")], seed=1)
    h = result.history
    sends = h[h["f"] == "send"]
    assert len(sends) == 200 and (sends["type"] == "fail").all()
    assert (sends["error"] == "TOPIC_AUTHORIZATION_FAILED").all()
    assert ((sends["time"] - sends["invoke_time"]) < 1.0).all()             # no retries until the timeout
    assert (result.truth.replicas("events")["log_end"] == 0).all()          # nothing was written
    assert result.counts()["read by the final catch-up"] == 0
    row = result.summary().loc["authorization failures: producer (User:mallory)", "value"]
    assert "200 records to events refused (TOPIC_AUTHORIZATION_FAILED)" in row
    assert result.producer_errors.get("TOPIC_AUTHORIZATION_FAILED", 0) >= 1


def test_a_producer_without_describe_is_refused_by_the_metadata():
    """A topic the principal may not DESCRIBE comes back from Metadata as TOPIC_AUTHORIZATION_FAILED: the Java
    producer's send() fails with TopicAuthorizationException instead of waiting for a leader."""
    result = edsim.simulate(broker=AUTH, workload={"messages": 100, "rate": 400, "consumers": 0},
                            producer={"edsim.principal": "User:nobody"}, seed=1)
    sends = result.history[result.history["f"] == "send"]
    assert (sends["type"] == "fail").all() and (sends["error"] == "TOPIC_AUTHORIZATION_FAILED").all()
    assert ((sends["time"] - sends["invoke_time"]) < 1.0).all()


def test_an_exactly_once_pipeline_granted_what_it_needs_runs_row_for_row_as_without_an_authorizer():
    """Produce (WRITE), Fetch (READ), the group (READ), the transactional ids (WRITE), AddPartitionsToTxn,
    AddOffsetsToTxn, TxnOffsetCommit and EndTxn all pass, and authorizing costs no time: the same history."""
    acls = [edsim.acl("User:app", "ALL", topic="*"), edsim.acl("User:app", "ALL", transactional_id="*"),
            edsim.acl("User:app", "READ", group="edsim-workload")]
    kw = dict(workload={"messages": 200, "rate": 400, "consumers": 2, "pipeline": "exactly_once_v2"},
              producer={"edsim.principal": "User:app"}, consumer={"edsim.principal": "User:app"}, seed=1)
    assert _history_hash(broker=AUTH, acls=acls, **kw) == _history_hash(**kw)


def test_a_pipeline_denied_its_group_processes_nothing_and_the_summary_names_the_principal():
    acls = [edsim.acl("User:app", "ALL", topic="*"), edsim.acl("User:app", "ALL", transactional_id="*"),
            edsim.acl("User:app", "READ", group="edsim-workload", permission_type="DENY")]
    result = edsim.simulate(broker=AUTH, acls=acls, workload={"messages": 100, "rate": 400, "consumers": 1,
                                                              "pipeline": "exactly_once_v2"},
                            producer={"edsim.principal": "User:app"}, consumer={"edsim.principal": "User:app"},
                            seed=1)
    assert result.counts()["processed"] == 0
    row = result.summary().loc["authorization failures: consumer-1 (User:app)", "value"]
    assert "group edsim-workload refused" in row and "GROUP_AUTHORIZATION_FAILED" in row


def test_a_granted_producer_and_consumer_group_run_as_without_an_authorizer():
    acls = [edsim.acl("User:alice", "WRITE", topic="events"),
            edsim.acl("User:bob", "READ", topic="ev", pattern_type="PREFIXED"),
            edsim.acl("User:bob", "READ", group="edsim-workload")]
    result = edsim.simulate(broker=AUTH, workload={"messages": 300, "rate": 300, "consumers": 2},
                            producer={"edsim.principal": "User:alice"}, consumer={"edsim.principal": "User:bob"},
                            acls=acls, seed=1)
    counts = result.counts()
    assert counts["acknowledged"] == 300 and counts["processed"] == 300
    assert not any(str(i).startswith("authorization") for i in result.summary().index)


def test_a_consumer_denied_the_group_gets_group_authorization_failed_from_poll():
    """FindCoordinator needs DESCRIBE on the group, JoinGroup READ: refused, the Java consumer raises
    GroupAuthorizationException from poll(). The refusal is a subscribe row of type fail; the summary names
    the principal and the group."""
    cluster = edsim.Cluster(3, seed=1, broker={**AUTH, "group.initial.rebalance.delay.ms": 0})
    cluster.create_topic("events", partitions=2)
    cluster.acls.add(edsim.acl("User:bob", "READ", topic="events"))
    consumer = cluster.consumer({"group.id": "billing", "edsim.principal": "User:bob"}, name="bob")
    raised = []

    def app(env):
        consumer.subscribe(["events"])
        for _ in range(20):
            try:
                yield from consumer.poll(0.1)
            except FatalConsumerError as error:
                raised.append(error.code)
                return

    cluster.env.process(app(cluster.env))
    cluster.run(until=3)
    assert raised == ["GROUP_AUTHORIZATION_FAILED"]
    h = cluster.history.to_frame()
    refused = h[(h["error"] == "GROUP_AUTHORIZATION_FAILED")]
    assert len(refused) == 1 and refused["type"].iloc[0] == "fail" and refused["f"].iloc[0] == "subscribe"
    assert "User:bob" in refused["detail"].iloc[0] and "billing" in refused["detail"].iloc[0]
    assert not consumer.assignment


def test_a_consumer_that_may_join_but_not_read_the_topic_gets_topic_authorization_failed_from_poll():
    """READ on the group but only DESCRIBE on the topic: the group forms, the Fetch is refused, poll() raises
    TopicAuthorizationException, and the history holds an assign row of type fail naming the partition."""
    cluster = edsim.Cluster(3, seed=1, broker={**AUTH, "group.initial.rebalance.delay.ms": 0})
    cluster.create_topic("events", partitions=1)
    cluster.acls.add(edsim.acl("User:bob", "READ", group="billing"),
                     edsim.acl("User:bob", "DESCRIBE", topic="events"))
    consumer = cluster.consumer({"group.id": "billing", "edsim.principal": "User:bob",
                                 "auto.offset.reset": "earliest"}, name="bob")
    raised = []

    def app(env):
        consumer.subscribe(["events"])
        while len(raised) < 3:
            try:
                yield from consumer.poll(0.2)
            except FatalConsumerError as error:
                raised.append(error.code)

    cluster.env.process(app(cluster.env))
    cluster.run(until=5)
    assert raised == ["TOPIC_AUTHORIZATION_FAILED"] * 3                      # every poll raises it again
    h = cluster.history.to_frame()
    refused = h[h["error"] == "TOPIC_AUTHORIZATION_FAILED"]
    assert len(refused) == 1                                                # one row, not one per retry
    assert (refused["f"].iloc[0], refused["type"].iloc[0], refused["partition"].iloc[0]) == ("assign", "fail", 0)
    assert consumer.assignment == [("events", 0)]                          # it is a member: READ on the group


def test_a_transactional_producer_denied_its_transactional_id_fails_init_transactions():
    cluster = edsim.Cluster(3, seed=1, broker=AUTH)
    cluster.create_topic("events")
    cluster.acls.add(edsim.acl("User:alice", "WRITE", topic="events"))
    producer = cluster.producer({"transactional.id": "tx-1", "edsim.principal": "User:alice"})
    raised = []

    def app(env):
        try:
            yield from producer.init_transactions()
        except KafkaError as error:
            raised.append(error.code)

    cluster.env.process(app(cluster.env))
    cluster.run(until=3)
    assert raised == ["TRANSACTIONAL_ID_AUTHORIZATION_FAILED"]


def test_acls_follow_the_scenario_into_files_and_back(tmp_path):
    scenario = edsim.Scenario(broker=AUTH, producer={"edsim.principal": "User:alice"},
                              acls=[edsim.acl("User:alice", "WRITE", topic="ev", pattern_type="PREFIXED"),
                                    edsim.acl("User:*", "READ", group="g", permission_type="DENY")])
    data = scenario.to_dict()
    assert data["acls"][0] == {"resource_type": "TOPIC", "resource_name": "ev", "pattern_type": "PREFIXED",
                               "principal": "User:alice", "operation": "WRITE", "permission_type": "ALLOW"}
    assert edsim.Scenario.from_dict(data).acls == scenario.acls
    path = scenario.save(tmp_path / "s.yaml")
    assert edsim.Scenario.load(path).acls == scenario.acls
    assert "acls=[edsim.acl('User:alice', 'WRITE', topic='ev', pattern_type='PREFIXED')" in scenario.to_code()
    assert "acls" not in edsim.Scenario().to_dict()


# ---- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("principal", [None, "", "alice", "User:"])
def test_an_acl_naming_no_principal_is_refused(principal):
    with pytest.raises(edsim.ConfigError, match=r"principal=.* is not allowed: principal must be a principal "
                                                r"'User:<name>'"):
        edsim.acl(principal, "READ", topic="orders")


@pytest.mark.parametrize("field, kwargs, allowed", [
    ("operation", dict(operation="REDA"), "one of ALL, READ, WRITE"),
    ("pattern_type", dict(pattern_type="MATCH"), "one of LITERAL, PREFIXED"),
    ("permission_type", dict(permission_type="MAYBE"), "one of ALLOW, DENY"),
])
def test_unknown_operation_pattern_or_permission_is_refused_naming_what_is_allowed(field, kwargs, allowed):
    args = {"operation": "READ", **kwargs}
    with pytest.raises(edsim.ConfigError, match=f"{field}=.* is not allowed: {field} must be {allowed}"):
        edsim.acl("User:alice", args.pop("operation"), topic="orders", **args)


def test_unknown_resource_type_and_bad_resources_are_refused():
    with pytest.raises(edsim.ConfigError, match="resource_type='QUEUE' is not allowed: resource_type must be one "
                                                "of TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID"):
        AclBinding("QUEUE", "q", "LITERAL", "User:alice", "READ")
    with pytest.raises(edsim.ConfigError, match="exactly one of topic"):
        edsim.acl("User:alice", "READ", topic="t", group="g")
    with pytest.raises(edsim.ConfigError, match="exactly one of topic"):
        edsim.acl("User:alice", "READ")
    with pytest.raises(edsim.ConfigError, match="an ACL needs principal"):
        edsim.Scenario(acls=[{"resource_type": "TOPIC", "resource_name": "t", "operation": "READ"}])
    with pytest.raises(edsim.ConfigError, match=r"acls\[0\]: operation='nope' is not allowed"):
        edsim.Scenario.from_dict({"acls": [{"resource_type": "TOPIC", "resource_name": "t", "principal": "User:a",
                                            "operation": "nope"}]})
    with pytest.raises(edsim.ConfigError, match="acls=.* is not allowed: a list"):
        edsim.Scenario(acls=edsim.acl("User:a", "READ", topic="t"))


@pytest.mark.parametrize("section, key, value, allowed", [
    ("broker", "authorizer.class.name", "kafka.security.authorizer.AclAuthorizer", "one of ''"),
    ("broker", "super.users", "admin", "a principal 'User:<name>'"),
    ("broker", "allow.everyone.if.no.acl.found", "yes", "true or false"),
    ("producer", "edsim.principal", "alice", "a principal 'User:<name>'"),
    ("consumer", "edsim.principal", 7, "a principal 'User:<name>'"),
])
def test_bad_security_settings_are_refused_naming_key_value_and_what_is_allowed(section, key, value, allowed):
    with pytest.raises(edsim.ConfigError, match=f"{key}=.* is not allowed: {key} must be {allowed}"):
        edsim.Scenario(**{section: {key: value}})


def test_a_refused_batch_gives_its_sequence_numbers_back_so_a_later_grant_writes_at_once():
    """WRITE revoked, then granted again on a running cluster: the refused batches were never written, so the
    idempotent producer numbers the next batch where the acknowledged ones stopped (Java's TxnPartitionMap
    .adjustSequencesDueToFailedBatch); otherwise the leader would see a gap (OUT_OF_ORDER_SEQUENCE_NUMBER) and the
    record would fail after delivery.timeout.ms."""
    cluster = edsim.Cluster(3, seed=1, broker=AUTH)
    cluster.create_topic("events")
    write = edsim.acl("User:alice", "WRITE", topic="events")
    cluster.acls.add(write, edsim.acl("User:alice", "DESCRIBE", topic="events"))
    producer = cluster.producer({"edsim.principal": "User:alice"})
    outcomes = []

    def app(env):
        for i in range(12):
            if i == 4:
                cluster.acls.remove(write)
            if i == 8:
                cluster.acls.add(write)
            try:
                metadata = yield producer.send("events", i)
                outcomes.append(metadata.offset)
            except KafkaError as error:
                outcomes.append(error.code)

    cluster.env.process(app(cluster.env))
    cluster.run(until=10)
    assert outcomes == [0, 1, 2, 3] + ["TOPIC_AUTHORIZATION_FAILED"] * 4 + [4, 5, 6, 7]


def test_a_transaction_writing_to_a_topic_it_may_not_write_must_abort():
    """AddPartitionsToTxn needs WRITE on each topic: TOPIC_AUTHORIZATION_FAILED is an abortable error, the records
    not yet sent fail (RecordAccumulator.abortUndrainedBatches), commit_transaction() raises, and the abort ends
    the transaction (a txn row of type fail)."""
    cluster = edsim.Cluster(3, seed=1, broker=AUTH)
    cluster.create_topic("events")
    cluster.acls.add(edsim.acl("User:alice", "WRITE", transactional_id="tx"),
                     edsim.acl("User:alice", "DESCRIBE", topic="events"))
    producer = cluster.producer({"edsim.principal": "User:alice", "transactional.id": "tx"})
    steps = []

    def app(env):
        yield from producer.init_transactions()
        producer.begin_transaction()
        producer.send("events", 1)
        try:
            yield from producer.commit_transaction()
            steps.append("committed")
        except KafkaError as error:
            steps.append(error.code)
            yield from producer.abort_transaction()
            steps.append("aborted")

    cluster.env.process(app(cluster.env))
    cluster.run(until=10)
    assert steps == ["TOPIC_AUTHORIZATION_FAILED", "aborted"]
    h = cluster.history.to_frame()
    assert list(zip(h["f"], h["type"])) == [("send", "fail"), ("txn", "fail")]
    assert h["error"].iloc[0] == "TOPIC_AUTHORIZATION_FAILED"
