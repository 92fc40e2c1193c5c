"""Detectors: which detector each node serves (inventory), which ones an environment uses, and the
rule that a detector belongs to one environment at a time.

As in the original, an environment's detectors follow from its `hosts` variable (a JSON list or a
comma-separated list of hostnames): the detectors of those nodes. They are claimed when the
environment is created, before anything is deployed, and released when it is destroyed; a creation
that needs a detector another environment holds fails with "detector X is already in use".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from aliecs.cluster.inventory import NodeSpec
from aliecs.errors import AliecsError

HOSTS = "hosts"
DETECTORS = "detectors"
MAX_HOSTS = 10_000


class DetectorInUseError(AliecsError):
    """A detector the new environment needs is held by another environment."""


class UnknownHostError(AliecsError):
    """`hosts` names a node the inventory does not have."""


def parse_hosts(text: str) -> list[str]:
    """`["flp1", "flp2"]` or `flp1,flp2` -> hostnames (empty entries dropped)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AliecsError(f"variable {HOSTS}: not a JSON list of hostnames: {exc}") from None
        if not isinstance(value, list):
            raise AliecsError(f"variable {HOSTS}: expected a JSON list of hostnames")
        hosts = [str(item).strip() for item in value]
    else:
        hosts = [item.strip() for item in text.split(",")]
    hosts = [host for host in hosts if host]
    if len(hosts) > MAX_HOSTS:
        raise AliecsError(f"variable {HOSTS}: {len(hosts)} hosts, at most {MAX_HOSTS}")
    return hosts


class DetectorRegistry:
    def __init__(self, nodes: Iterable[NodeSpec]) -> None:
        self.by_host = {node.hostname: node.detectors for node in nodes}
        self.holder: dict[str, str] = {}  # detector -> environment id

    def all(self) -> list[str]:
        return sorted({detector for detectors in self.by_host.values() for detector in detectors})

    def active(self) -> list[str]:
        return sorted(self.holder)

    def available(self) -> list[str]:
        return [detector for detector in self.all() if detector not in self.holder]

    def of(self, env_id: str) -> list[str]:
        return sorted(detector for detector, holder in self.holder.items() if holder == env_id)

    def for_variables(self, variables: Mapping[str, str]) -> list[str]:
        """The detectors of the nodes named by the `hosts` variable."""
        hosts = parse_hosts(variables.get(HOSTS, ""))
        unknown = [host for host in hosts if host not in self.by_host]
        if unknown:
            known = ", ".join(sorted(self.by_host)) or "none"
            raise UnknownHostError(
                f"variable {HOSTS}: {', '.join(unknown[:5])} not in the inventory (known hosts: {known})"
            )
        return sorted({detector for host in hosts for detector in self.by_host[host]})

    def claim(self, env_id: str, detectors: Iterable[str]) -> None:
        """All or nothing; synchronous, so two creations cannot both take one detector."""
        wanted = sorted(set(detectors))
        for detector in wanted:
            holder = self.holder.get(detector)
            if holder is not None and holder != env_id:
                raise DetectorInUseError(
                    f"detector {detector} is already in use (by environment {holder}); "
                    "destroy that environment or leave its hosts out of `hosts`"
                )
        for detector in wanted:
            self.holder[detector] = env_id

    def release(self, env_id: str) -> None:
        for detector in self.of(env_id):
            del self.holder[detector]
