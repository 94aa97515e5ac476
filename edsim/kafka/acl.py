"""Access control: ACL bindings and the authorizer that judges each request against them.

Kafka's rules (https://kafka.apache.org/documentation/#security_authz, KIP-290 for prefixed ACLs), as
``org.apache.kafka.metadata.authorizer.StandardAuthorizer`` / ``StandardAuthorizerData`` apply them:

- A binding is a resource pattern (resource type, name, pattern type LITERAL or PREFIXED; the LITERAL name ``*``
  matches every resource of its type) and an entry (principal ``User:<name>`` or ``User:*``, host, operation,
  ALLOW or DENY): Java's ``AclBinding(ResourcePattern, AccessControlEntry)``.
- Without an authorizer (``authorizer.class.name`` empty, the default) every request is allowed.
- With one, a principal in ``super.users`` may do anything. Otherwise, among the bindings whose pattern matches the
  resource: any matching DENY denies (DENY wins over ALLOW); else any matching ALLOW allows; else, if *no* binding
  matches the resource at all (for any principal), ``allow.everyone.if.no.acl.found`` decides (false: denied);
  and if bindings exist on the resource but none is for this principal, the request is denied.
- An ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE (ALTER_CONFIGS implies DESCRIBE_CONFIGS); a DENY
  denies only the operation it names (a DENY of READ does not deny DESCRIBE). ALL covers every operation.

The principal of a request is its connection's: in Kafka, the identity SASL or mutual TLS authenticated; in
edsim, the client's ``edsim.principal`` setting (Kafka's ``User:ANONYMOUS`` when unset, as on a PLAINTEXT
listener). Brokers talk to each other as ``User:broker``, which is always a super user (Kafka deployments list
the inter-broker principal in ``super.users``); the run's final reader is a super user too. ACLs take effect at
once on every broker (Kafka propagates them through the metadata log, within milliseconds).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..configs import ConfigError

RESOURCE_TYPES = ("TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID")
PATTERN_TYPES = ("LITERAL", "PREFIXED")
OPERATIONS = ("ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "CLUSTER_ACTION",
              "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE")
PERMISSIONS = ("ALLOW", "DENY")
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"
ANONYMOUS = "User:ANONYMOUS"             # Kafka's principal for an unauthenticated (PLAINTEXT) connection
BROKER_PRINCIPAL = "User:broker"         # the brokers' own principal: always a super user
FINAL_READER_PRINCIPAL = "User:edsim-final-reader"   # the run's final catch-up read: always a super user
CLUSTER_NAME = "kafka-cluster"           # the one CLUSTER resource's name
# StandardAuthorizerData.IMPLIES_DESCRIBE / IMPLIES_DESCRIBE_CONFIGS: only in ALLOW bindings
IMPLIES = {"DESCRIBE": frozenset({"DESCRIBE", "READ", "WRITE", "DELETE", "ALTER"}),
           "DESCRIBE_CONFIGS": frozenset({"DESCRIBE_CONFIGS", "ALTER_CONFIGS"})}

def _bad(key, value, allowed):
    return ConfigError(f"{key}={value!r} is not allowed: {key} must be {allowed}")


def _choice(key, value, allowed):
    """Kafka's AclOperation/ResourceType/PatternType.fromString: case-insensitive ("Read" as kafka-acls takes it)."""
    text = value.upper() if isinstance(value, str) else None
    if text not in allowed:
        raise _bad(key, value, "one of " + ", ".join(allowed))
    return text


@dataclass(frozen=True)
class AclBinding:
    """One ACL: Java's ``AclBinding(new ResourcePattern(resource_type, resource_name, pattern_type),
    new AccessControlEntry(principal, host, operation, permission_type))``. Build it with :func:`acl`."""

    resource_type: str
    resource_name: str
    pattern_type: str
    principal: str
    operation: str
    permission_type: str = "ALLOW"
    host: str = WILDCARD

    def __post_init__(self):
        fix = object.__setattr__
        fix(self, "resource_type", _choice("resource_type", self.resource_type, RESOURCE_TYPES))
        fix(self, "pattern_type", _choice("pattern_type", self.pattern_type, PATTERN_TYPES))
        fix(self, "operation", _choice("operation", self.operation, OPERATIONS))
        fix(self, "permission_type", _choice("permission_type", self.permission_type, PERMISSIONS))
        if self.principal is None or self.principal == "":
            raise _bad("principal", self.principal, "a principal 'User:<name>' (or 'User:*' for every principal): "
                                                    "an ACL names who it allows or denies")
        if not isinstance(self.principal, str) or not all(self.principal.partition(":")[::2]):
            raise _bad("principal", self.principal, "a principal 'User:<name>' (or 'User:*' for every principal)")
        if not isinstance(self.resource_name, str) or not self.resource_name:
            raise _bad("resource_name", self.resource_name, "a non-empty name (or '*' with pattern_type LITERAL "
                                                            "for every resource of the type)")
        if self.resource_type == "CLUSTER" and self.resource_name != CLUSTER_NAME:
            raise _bad("resource_name", self.resource_name, f"{CLUSTER_NAME!r} for the CLUSTER resource")
        if self.pattern_type == "PREFIXED" and self.resource_name == WILDCARD:
            raise _bad("resource_name", self.resource_name, "a prefix other than '*' with pattern_type PREFIXED "
                                                            "(the LITERAL name '*' already matches everything)")
        if self.host != WILDCARD:
            raise _bad("host", self.host, "'*' (edsim's clients have no addresses)")

    def matches_resource(self, resource_type: str, name: str) -> bool:
        """Does this binding's pattern cover the resource? LITERAL: the same name, or ``*``; PREFIXED: a name
        that starts with the prefix (KIP-290)."""
        if resource_type != self.resource_type:
            return False
        if self.pattern_type == "LITERAL":
            return self.resource_name == name or self.resource_name == WILDCARD
        return name.startswith(self.resource_name)

    def result(self, principal: str, operation: str):
        """StandardAuthorizerData.findResult: "ALLOW", "DENY", or None when the entry does not apply."""
        if self.principal != principal and self.principal != WILDCARD_PRINCIPAL:
            return None
        if self.operation != "ALL":
            if self.permission_type == "ALLOW" and operation in IMPLIES:
                if self.operation not in IMPLIES[operation]:
                    return None
            elif self.operation != operation:
                return None
        return self.permission_type

    def to_dict(self) -> dict:
        data = {"resource_type": self.resource_type, "resource_name": self.resource_name,
                "pattern_type": self.pattern_type, "principal": self.principal, "operation": self.operation,
                "permission_type": self.permission_type}
        return data

    @classmethod
    def from_dict(cls, data) -> "AclBinding":
        if isinstance(data, AclBinding):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"acls: {data!r} is not allowed: each ACL is edsim.acl(...) or a dict with "
                              "resource_type, resource_name, pattern_type, principal, operation, permission_type")
        known = ("resource_type", "resource_name", "pattern_type", "principal", "operation", "permission_type",
                 "host")
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown ACL field {key!r}; known ACL fields: {', '.join(known)}")
        for key in ("resource_type", "resource_name", "principal", "operation"):
            if key not in data:
                raise ConfigError(f"an ACL needs {key}: {data!r} has none")
        return cls(**{"pattern_type": "LITERAL", **data})

    def __repr__(self):
        resource = {"TOPIC": "topic", "GROUP": "group", "TRANSACTIONAL_ID": "transactional_id"}.get(
            self.resource_type)
        where = f"{resource}={self.resource_name!r}" if resource else "cluster=True"
        extra = ", pattern_type='PREFIXED'" if self.pattern_type == "PREFIXED" else ""
        extra += ", permission_type='DENY'" if self.permission_type == "DENY" else ""
        return f"edsim.acl({self.principal!r}, {self.operation!r}, {where}{extra})"


def acl(principal: str, operation: str, *, topic: str | None = None, group: str | None = None,
        transactional_id: str | None = None, cluster: bool = False, pattern_type: str = "LITERAL",
        permission_type: str = "ALLOW") -> AclBinding:
    """An ACL binding, as ``kafka-acls --add --allow-principal User:alice --operation Read --topic orders``:

        edsim.acl("User:alice", "READ", topic="orders")
        edsim.acl("User:alice", "WRITE", topic="orders.", pattern_type="PREFIXED")   # every topic "orders.*"
        edsim.acl("User:*", "READ", group="billing")
        edsim.acl("User:mallory", "ALL", topic="*", permission_type="DENY")

    Exactly one resource: ``topic``, ``group``, ``transactional_id`` or ``cluster=True``. Operations: ALL, READ,
    WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE
    (case-insensitive). Hand them to a scenario (``acls=[...]``) or to a running cluster
    (``cluster.acls.add(...)``)."""
    resources = [(t, n) for t, n in (("TOPIC", topic), ("GROUP", group), ("TRANSACTIONAL_ID", transactional_id))
                 if n is not None]
    if cluster:
        resources.append(("CLUSTER", CLUSTER_NAME))
    if len(resources) != 1:
        raise ConfigError(f"acl({principal!r}, {operation!r}) names {len(resources)} resources: an ACL needs exactly "
                          "one of topic=..., group=..., transactional_id=... or cluster=True")
    (resource_type, name), = resources
    return AclBinding(resource_type, name, pattern_type, principal, operation, permission_type)


class Authorizer:
    """The cluster's authorizer and its ACLs (``cluster.acls``): Kafka's ``StandardAuthorizer``, or none."""

    def __init__(self, config, acls=()):
        self.enabled = bool(config["authorizer.class.name"])
        self.allow_if_no_acl = config["allow.everyone.if.no.acl.found"]
        self.super_users = frozenset(config["super.users"]) | {BROKER_PRINCIPAL, FINAL_READER_PRINCIPAL}
        self.bindings: list[AclBinding] = []
        self.add(*acls)

    # ---- the admin API (Admin.createAcls / deleteAcls / describeAcls) ----------------------------------------
    def add(self, *bindings):
        """Add ACLs (``edsim.acl(...)`` or dicts); adding one that exists changes nothing, as in Kafka."""
        for binding in bindings:
            binding = AclBinding.from_dict(binding)
            if binding not in self.bindings:
                self.bindings.append(binding)

    def remove(self, *bindings):
        """Delete ACLs; one that does not exist is ignored."""
        for binding in bindings:
            binding = AclBinding.from_dict(binding)
            if binding in self.bindings:
                self.bindings.remove(binding)

    def list(self) -> list[AclBinding]:
        return list(self.bindings)

    def __iter__(self):
        return iter(list(self.bindings))

    def __len__(self):
        return len(self.bindings)

    def __repr__(self):
        state = "StandardAuthorizer" if self.enabled else "no authorizer (everything is allowed)"
        return f"<acls: {state}; {len(self.bindings)} ACLs>"

    # ---- judging a request ------------------------------------------------------------------------------
    def authorize(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        """StandardAuthorizerData.authorize: may ``principal`` do ``operation`` on the resource?"""
        if not self.enabled or principal in self.super_users:
            return True
        found_resource, allowed = False, False
        for binding in self.bindings:
            if not binding.matches_resource(resource_type, name):
                continue
            found_resource = True
            result = binding.result(principal, operation)
            if result == "DENY":
                return False                       # DENY wins over any ALLOW
            if result == "ALLOW":
                allowed = True
        if allowed:
            return True
        return self.allow_if_no_acl if not found_resource else False
