"""Services: applications on the public client API, each run as instances that crash, pause and restart as
processes do, with state stores backed by changelog topics."""
from .instance import Instance, ServiceRun
from .service import Service, ServiceSpec, service
from .store import StateStore

__all__ = ["Service", "ServiceSpec", "service", "Instance", "ServiceRun", "StateStore"]
