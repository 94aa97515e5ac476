"""Scenarios as plain data and files: ``Scenario.to_dict()`` / ``from_dict()``, ``save(path)`` / ``Scenario.load``.

A file is YAML (``.yaml``, ``.yml``) or JSON (``.json``) holding only plain data: numbers, strings, lists and
mappings. The fields are the Scenario's; faults and invariants are mappings naming their kind and the arguments
of their builder (``{"kind": "crash", "target": "leader", "at": 1.0, "restart_after": 2.0}`` is
``faults.crash("leader", at=1.0, restart_after=2.0)``); a service names its class by import path::

    services:
      shop: {class: "edsim.apps:Load", options: {topic: orders, rate: 500}}
      counter: {class: "shop.counting:Counter", instances: 2, num_standby_replicas: 1}

edsim's own services are always found. Any other class means importing its module, which runs that module's
code: loading does so only when the caller allows it (``allow_import=True``, ``python -m edsim run --import``);
otherwise it raises a ConfigError and executes nothing. Every value then goes through the same checks as the
API, so a bad file fails with the API's message, prefixed with where in the file the value sits.
"""
from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

from . import faults as fault_builders
from . import invariants as invariant_builders
from .app.service import ServiceSpec, as_spec
from .configs import ConfigError, unknown_key
from .faults import FaultError

FIELDS = ("brokers", "topic", "producer", "consumer", "broker", "workload", "faults", "seed", "topics", "services",
          "invariants", "acls")
SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}

# Each fault kind: the arguments of its builder, in order, and the Fault fields they come from.
FAULT_KINDS = ("crash", "isolate", "partition", "pause", "slow", "drop")
INVARIANT_KINDS = ("never_below", "view_equals_fold", "exactly_one_output")
SERVICE_KEYS = ("class", "instances", "num_standby_replicas", "options", "instance_names")


# ---- to plain data ------------------------------------------------------------------------------------------
def _plain(value, where: str):
    """``value`` as JSON-able data (tuples become lists), or a ConfigError naming where it sits."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: key {k!r} cannot be saved: keys of a scenario file are strings")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    raise ConfigError(f"{where}={value!r} cannot be saved: a scenario file holds plain data only (numbers, "
                      "strings, lists, dicts)")


def fault_to_dict(fault) -> dict:
    kind = fault.kind
    if kind == "partition":
        data = {"side_a": list(fault.targets[0]), "side_b": list(fault.targets[1])}
    elif kind == "drop":
        data = {"source": fault.targets[0], "destination": fault.targets[1], "probability": fault.probability}
    else:
        data = {"target": fault.targets[0]}
    data["at"] = fault.at
    if kind == "slow":
        data["factor"] = fault.factor
    if fault.duration is not None:
        data[{"crash": "restart_after", "isolate": "heal_after", "partition": "heal_after"}.get(kind, "duration")] = \
            fault.duration
    if fault.options.get("power_loss"):
        data["power_loss"] = True
    return {"kind": kind, **data}


def invariant_to_dict(invariant) -> dict:
    kind = type(invariant).__name__
    if kind == "NeverBelow":
        return {"kind": "never_below", "service": invariant.service, "store": invariant.store,
                "bound": invariant.bound}
    if kind == "ViewEqualsFold":
        return {"kind": "view_equals_fold", "view": invariant.view, "log": invariant.log, "fold": invariant.fold}
    if kind == "ExactlyOneOutput":
        return {"kind": "exactly_one_output", "input_topic": invariant.input, "output_topic": invariant.output}
    raise ConfigError(f"invariant {invariant!r} cannot be saved: only edsim.invariants' own checks can")


def class_path(cls) -> str:
    """``package.module:Class``, the name a file gives a service class (edsim's own by their public module:
    ``edsim.apps:Load``)."""
    import sys
    module = cls.__module__
    if module.startswith("edsim."):
        parts = module.split(".")
        for n in range(2, len(parts)):
            parent = sys.modules.get(".".join(parts[:n]))
            if parent is not None and getattr(parent, cls.__qualname__, None) is cls:
                module = ".".join(parts[:n])
                break
    path = f"{module}:{cls.__qualname__}"
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise ConfigError(f"service class {cls.__qualname__} cannot be saved by name: it is defined in "
                          f"{'a script or notebook' if cls.__module__ == '__main__' else 'a function'}, not in a "
                          "module it can be imported from; move it into a module (package.module:Class)")
    return path


def service_to_dict(name: str, spec: ServiceSpec) -> dict:
    data = {"class": class_path(spec.cls)}
    if spec.instances != 1:
        data["instances"] = spec.instances
    if spec.num_standby_replicas:
        data["num_standby_replicas"] = spec.num_standby_replicas
    if spec.options:
        data["options"] = _plain(spec.options, f"services.{name}.options")
    if spec.instance_names is not None:
        data["instance_names"] = list(spec.instance_names)
    return data


def to_dict(scenario) -> dict:
    """The scenario as plain data: ``from_dict(to_dict(s)) == s`` (for services that can be named)."""
    data = {"brokers": scenario.brokers}
    for name in ("topic", "producer", "consumer", "broker", "workload", "topics"):
        value = getattr(scenario, name)
        if value:
            data[name] = _plain(value, name)
    if scenario.services:
        data["services"] = {name: service_to_dict(name, spec) for name, spec in scenario.services.items()}
    if scenario.faults:
        data["faults"] = [fault_to_dict(f) for f in scenario.faults]
    if scenario.invariants:
        data["invariants"] = [invariant_to_dict(i) for i in scenario.invariants]
    if scenario.acls:
        data["acls"] = [binding.to_dict() for binding in scenario.acls]     # edsim.acl(...) as its fields
    data["seed"] = scenario.seed
    return data


# ---- from plain data ----------------------------------------------------------------------------------------
def _call(kind: str, builder, args: dict, where: str, error):
    """``builder(**args)``, refusing unknown or missing arguments by name, and prefixing errors with ``where``."""
    params = inspect.signature(builder).parameters
    for key in args:
        if key not in params:
            raise unknown_key(f"{where} ({kind})", key, list(params))
    missing = [p.name for p in params.values() if p.default is p.empty and p.name not in args]
    if missing:
        raise error(f"{where} ({kind}): {', '.join(missing)} missing; {kind} takes {', '.join(params)}")
    try:
        return builder(**args)
    except (ConfigError, FaultError) as e:
        raise type(e)(f"{where}: {e}") from None


def _kind_of(entry, where: str, kinds, error):
    if not isinstance(entry, dict):
        raise error(f"{where}={entry!r} is not allowed: a mapping with kind (one of {', '.join(kinds)}) and "
                    "the arguments")
    kind = entry.get("kind")
    if kind not in kinds:
        raise error(f"{where}: kind={kind!r} is not allowed: one of {', '.join(kinds)}")
    return kind, {k: v for k, v in entry.items() if k != "kind"}


def fault_from_dict(entry, where="faults"):
    kind, args = _kind_of(entry, where, FAULT_KINDS, FaultError)
    return _call(kind, getattr(fault_builders, kind), args, where, FaultError)


def invariant_from_dict(entry, where="invariants"):
    kind, args = _kind_of(entry, where, INVARIANT_KINDS, ConfigError)
    return _call(kind, getattr(invariant_builders, kind), args, where, ConfigError)


def import_class(path, where: str, allow_import: bool):
    """The class named ``package.module:Class``; a module outside edsim only with ``allow_import``."""
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ConfigError(f"{where}.class={path!r} is not allowed: a class is named package.module:Class, "
                          "e.g. 'edsim.apps:Load'")
    module_name, qualname = path.split(":")
    ours = module_name == "edsim" or module_name.startswith("edsim.")
    if not ours and not allow_import:
        raise ConfigError(f"{where}.class={path!r} is not imported: loading it would run the code of module "
                          f"{module_name!r}. Allow it if you trust the file: Scenario.load(path, "
                          "allow_import=True), or python -m edsim run --import")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{where}.class={path!r}: module {module_name!r} cannot be imported ({e})") from None
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}.class={path!r}: {module_name} has no {qualname}")
        obj = getattr(obj, part)
    return obj


def service_from_dict(name, entry, allow_import: bool) -> ServiceSpec:
    where = f"services.{name}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}={entry!r} is not allowed: a mapping with class (package.module:Class), and "
                          "optionally instances, num_standby_replicas, options")
    for key in entry:
        if key not in SERVICE_KEYS:
            raise unknown_key(where, key, SERVICE_KEYS)
    if "class" not in entry:
        raise ConfigError(f"{where}: class missing: name the service's class as package.module:Class")
    cls = import_class(entry["class"], where, allow_import)
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options={options!r} is not allowed: a mapping of the service's options")
    spec = ServiceSpec(as_spec(cls, name).cls, entry.get("instances", 1), entry.get("num_standby_replicas", 0),
                       options, entry.get("instance_names"))
    try:
        spec.check(name)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return spec


def _acl_from_dict(entry, where):
    from .kafka.acl import AclBinding
    try:
        return AclBinding.from_dict(entry)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def from_dict(data, allow_import: bool = False):
    """A Scenario from plain data (what ``to_dict`` gives, or a parsed file). Raises ConfigError / FaultError
    naming the key that is wrong."""
    from .scenario import Scenario
    if not isinstance(data, dict):
        raise ConfigError(f"a scenario is a mapping of {', '.join(FIELDS)}; got {type(data).__name__}")
    for key in data:
        if key not in FIELDS:
            raise unknown_key("scenario", key, FIELDS)
    fields = dict(data)
    if fields.get("faults") is not None:
        if not isinstance(fields["faults"], list):
            raise FaultError(f"faults={fields['faults']!r} is not allowed: a list of faults")
        fields["faults"] = [fault_from_dict(f, f"faults[{i}]") for i, f in enumerate(fields["faults"])]
    if fields.get("invariants") is not None:
        if not isinstance(fields["invariants"], list):
            raise ConfigError(f"invariants={fields['invariants']!r} is not allowed: a list of invariants")
        fields["invariants"] = [invariant_from_dict(x, f"invariants[{i}]") for i, x in enumerate(fields["invariants"])]
    if fields.get("acls") is not None:
        if not isinstance(fields["acls"], list):
            raise ConfigError(f"acls={fields['acls']!r} is not allowed: a list of ACLs")
        fields["acls"] = [_acl_from_dict(x, f"acls[{i}]") for i, x in enumerate(fields["acls"])]
    if fields.get("services") is not None:
        if not isinstance(fields["services"], dict):
            raise ConfigError(f"services={fields['services']!r} is not allowed: a mapping of services by name")
        fields["services"] = {name: service_from_dict(name, entry, allow_import)
                              for name, entry in fields["services"].items()}
    return Scenario(**fields)


# ---- files ----------------------------------------------------------------------------------------------------
def file_format(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{str(path)!r}: a scenario file ends in .yaml, .yml or .json")
    return SUFFIXES[suffix]


def dumps(data: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    import yaml
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def loads(text: str, fmt: str, source: str = "<text>"):
    try:
        if fmt == "json":
            return json.loads(text)
        import yaml
        return yaml.safe_load(text)
    except ValueError as e:           # json.JSONDecodeError
        raise ConfigError(f"{source} is not valid JSON: {e}") from None
    except Exception as e:            # yaml.YAMLError
        raise ConfigError(f"{source} is not valid YAML: {e}") from None


def save(scenario, path) -> Path:
    path = Path(path)
    path.write_text(dumps(to_dict(scenario), file_format(path)))
    return path


def load(path, allow_import: bool = False):
    path = Path(path)
    fmt = file_format(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{str(path)!r} cannot be read: {e.strerror}") from None
    data = loads(text, fmt, repr(str(path)))
    if data is None:
        raise ConfigError(f"{str(path)!r} is empty: a scenario file is a mapping of {', '.join(FIELDS)}")
    try:
        return from_dict(data, allow_import)
    except (ConfigError, FaultError) as e:
        raise type(e)(f"{path.name}: {e}") from None
