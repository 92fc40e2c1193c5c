"""Service-backed template namespaces: `inventory.*`, `config.*`, `runtime.*` and `odc.*`.

In the original these call apricot (Consul-backed inventory and component configuration) and the
ODC plugin. Templates only see functions, so each namespace is built from a small provider
interface; the local implementations read a YAML inventory and a key/value store kept as files in
a state directory, so that templates expand offline exactly as they would against a live
apricot with the same content. `dpl.*` lives in `jit.py` because it also needs the repository.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aliecs.workflow.expr import Namespace
from aliecs.workflow.yamlsource import load_yaml, to_plain


class ProviderError(ValueError):
    """A provider cannot answer (unknown host, missing key); becomes a template error at the tag."""


class Inventory(Protocol):
    def detector_for_host(self, host: str) -> str: ...

    def cru_cards_for_host(self, host: str) -> list[str]: ...

    def endpoints_for_cru_card(self, host: str, card: str) -> list[str]: ...


class KeyValueStore(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


@dataclass
class YamlInventory:
    """Hosts and their detector and CRU cards, as apricot's inventory returns them.

    File format::

        hosts:
          flp001: {detector: TST, cards: {"0228": ["0", "1"]}}
    """

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> YamlInventory:
        document = to_plain(load_yaml(path.read_text(), str(path)))
        hosts = document.get("hosts", {}) if isinstance(document, dict) else {}
        return cls(hosts=dict(hosts or {}))

    def _host(self, host: str) -> dict[str, Any]:
        entry = self.hosts.get(host)
        if entry is None:
            raise ProviderError(f"inventory: unknown host {host!r}")
        return entry

    def detector_for_host(self, host: str) -> str:
        detector = self._host(host).get("detector", "")
        if not detector:
            raise ProviderError(f"inventory: host {host!r} has no detector")
        return str(detector)

    def cru_cards_for_host(self, host: str) -> list[str]:
        return [str(card) for card in (self._host(host).get("cards") or {})]

    def endpoints_for_cru_card(self, host: str, card: str) -> list[str]:
        cards = self._host(host).get("cards") or {}
        if card not in cards:
            raise ProviderError(f"inventory: host {host!r} has no CRU card {card!r}")
        return [str(e) for e in cards[card] or []]


@dataclass
class MemoryStore:
    """A key/value store in memory (tests, one-shot expansions)."""

    data: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str) -> None:
        self.data[key] = value


class FileStore:
    """A key/value store persisted as one JSON file in the state directory (Consul's stand-in)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        data = json.loads(self.path.read_text())
        return {str(k): str(v) for k, v in data.items()}

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def set(self, key: str, value: str) -> None:
        data = self._load()
        data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.path)


def _json_list(values: list[str]) -> str:
    return json.dumps(values, separators=(",", ":"))


@dataclass
class Providers:
    """Everything the service namespaces read from; one instance per expansion (or per core)."""

    inventory: Inventory = field(default_factory=YamlInventory)
    store: KeyValueStore = field(default_factory=MemoryStore)

    @classmethod
    def local(cls, state_dir: Path) -> Providers:
        """The local services of a core: `<state>/inventory.yaml` and the store `<state>/kv.json`."""
        inventory_file = state_dir / "inventory.yaml"
        inventory = YamlInventory.from_file(inventory_file) if inventory_file.is_file() else YamlInventory()
        return cls(inventory=inventory, store=FileStore(state_dir / "kv.json"))

    def namespaces(self) -> dict[str, Any]:
        """`inventory`, `config`, `runtime`, `odc` and their legacy top-level aliases."""
        inventory = self.inventory
        store = self.store

        def detector_for_host(host: Any) -> str:
            return inventory.detector_for_host(str(host))

        def detectors_for_hosts(hosts: Any) -> str:
            names = json.loads(hosts) if isinstance(hosts, str) else list(hosts)
            found: list[str] = []
            for host in names:
                detector = inventory.detector_for_host(str(host))
                if detector not in found:
                    found.append(detector)
            return _json_list(found)

        def cru_cards_for_host(host: Any) -> str:
            return _json_list(inventory.cru_cards_for_host(str(host)))

        def endpoints_for_cru_card(host: Any, card: Any) -> str:
            return " ".join(inventory.endpoints_for_cru_card(str(host), str(card)))

        def resolve(component: Any, run_type: Any, role: Any, entry: Any) -> str:
            # apricot falls back to ANY run type and "any" role when the specific entry is missing.
            for rt in (str(run_type), "ANY"):
                for rn in (str(role), "any"):
                    path = f"{component}/{rt}/{rn}/{entry}"
                    if store.get(f"components/{path}") is not None:
                        return path
            return f"{component}/{run_type}/{role}/{entry}"

        def resolve_path(path: Any) -> str:
            parts = str(path).split("/")
            if len(parts) != 4:
                raise ProviderError(f"config.ResolvePath: {path!r} is not component/runType/role/entry")
            return resolve(*parts)

        def config_get(path: Any) -> str:
            value = store.get(f"components/{path}")
            if value is None:
                raise ProviderError(f"config.Get: no configuration payload at {path!r}")
            return value

        def runtime_get(component: Any, key: Any) -> str:
            return store.get(f"runtime/{component}/{key}") or ""

        def runtime_set(component: Any, key: Any, value: Any) -> str:
            store.set(f"runtime/{component}/{key}", str(value))
            return ""

        inventory_ns = Namespace(
            "inventory",
            {
                "DetectorForHost": detector_for_host,
                "DetectorsForHosts": detectors_for_hosts,
                "CRUCardsForHost": cru_cards_for_host,
                "EndpointsForCRUCard": endpoints_for_cru_card,
            },
        )
        config_ns = Namespace(
            "config",
            {"Resolve": resolve, "ResolvePath": resolve_path, "Get": config_get, "GetLegacy": config_get},
        )
        runtime_ns = Namespace("runtime", {"Get": runtime_get, "Set": runtime_set})
        # The ODC plugin's template objects: offline there is no EPN topology to name.
        odc_ns = Namespace(
            "odc",
            {"GenerateEPNTopologyFullname": lambda: "", "GenerateEPNWorkflowScript": lambda: ""},
        )
        scope: dict[str, Any] = {
            "inventory": inventory_ns,
            "config": config_ns,
            "runtime": runtime_ns,
            "odc": odc_ns,
            "GetConfig": config_get,
            "GetConfigLegacy": config_get,
            "ResolveConfigPath": resolve_path,
            "DetectorForHost": detector_for_host,
            "DetectorsForHosts": detectors_for_hosts,
            "CRUCardsForHost": cru_cards_for_host,
            "EndpointsForCRUCard": endpoints_for_cru_card,
            "GetRuntimeConfig": runtime_get,
        }
        return scope


def global_layers(store: KeyValueStore) -> tuple[dict[str, str], dict[str, str]]:
    """The environment's global defaults and vars (Consul `o2/runtime/aliecs/defaults|vars`)."""

    def layer(key: str) -> dict[str, str]:
        raw = store.get(key)
        if not raw:
            return {}
        data = json.loads(raw)
        if not isinstance(data, Mapping):
            raise ProviderError(f"{key} must hold a JSON object")
        return {str(k): str(v) for k, v in data.items()}

    return layer("runtime/aliecs/defaults"), layer("runtime/aliecs/vars")
