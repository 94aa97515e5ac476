"""The name registry: what a name means in one world.

Scenario validation, the nemesis, live faults and the panel all ask it, so a name means the same thing everywhere
(never what a string happens to parse to). An entry is anything with a lifecycle (``crash``, ``restart``,
``pause``, ``resume``) and the network nodes it speaks through (``node_names()``): a broker, the controller, a
standalone client, a service instance, or a whole service (every instance). A client that belongs to a service
instance is a part of that process, not a target of its own: a fault on it names the instance instead.
"""
from __future__ import annotations

import difflib


class Registry:
    def __init__(self):
        self._entries: dict[str, object] = {}
        self._kinds: dict[str, str] = {}
        self._part_of: dict[str, str] = {}      # client node name -> the instance whose process it lives in

    def add(self, name: str, entry, kind: str):
        if name in self._entries:
            raise ValueError(f"the name {name!r} is taken already (by a {self._kinds[name]}): every broker, client, "
                             "service and service instance needs a name of its own")
        self._entries[name] = entry
        self._kinds[name] = kind

    def add_part(self, client_name: str, owner: str):
        """``client_name`` is a client inside instance ``owner``'s process (its first client has the instance's
        own name, so it is the instance)."""
        if client_name != owner:
            if client_name in self._entries:
                raise ValueError(f"the name {client_name!r} is taken already (by a {self._kinds[client_name]})")
            self._part_of[client_name] = owner

    def __contains__(self, name) -> bool:
        return name in self._entries

    def get(self, name: str):
        return self._entries.get(name)

    def kind(self, name: str) -> str | None:
        return self._kinds.get(name)

    def names(self, *kinds: str) -> list[str]:
        """Registered names, in the order they were added (of the given kinds, or all)."""
        return [n for n in self._entries if not kinds or self._kinds[n] in kinds]

    def owner_of(self, client_name: str) -> str | None:
        """The instance a client lives in, if it is not a target itself."""
        return self._part_of.get(client_name)

    def unknown(self, name: str, described: str, also=()) -> str:
        """A sentence for a name that means nothing here: the closest registered name, and what is allowed."""
        owner = self._part_of.get(name)
        if owner is not None:
            return (f"target={name!r} is not allowed: it is a client inside the process of {owner!r}, and a fault "
                    f"hits a whole process: target {owner!r}")
        known = list(also) + [n for n in self._entries if self._kinds[n] != "broker"]
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        return f"target={name!r} is not allowed{hint} Use {described}"
