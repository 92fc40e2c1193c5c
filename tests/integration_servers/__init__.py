"""Stand-ins for the experiment's services the integration plugins call, speaking the same protos
over real gRPC on loopback: DCS's ECS gateway, the trigger system's CTP daemon, ODC, the DD
scheduler and Bookkeeping.

Every request is recorded (`Services.calls`, in arrival order, with its decoded fields), and each
method can be told how to misbehave (`Services.script(service, method, ...)`): answer after a delay,
refuse (the service's own way: rc != 0, status ERROR, an error state, a gRPC error), fail some
detectors (DCS), or drop the connection (the server goes away mid-request).
"""

from tests.integration_servers.services import Call, Script, Services

__all__ = ["Call", "Script", "Services"]
