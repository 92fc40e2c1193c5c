"""The control API server: `o2control.Control` over gRPC (grpclib) in front of an `aliecs.api.Core`.

Modules, one job each: `service` (the RPC handlers), `repos` (the repository RPCs and the
template catalogue, over `Core.repos`), `convert` (model -> protobuf), `events`
(aliecs.events -> `events.Event`), `streams` (Subscribe fan-out and auto-environment buffers),
`audit` (append-only event log), `auth` (bearer tokens), `errors` (exceptions -> gRPC status),
`limits` (bounds on request fields), `rolepath` (glob over role paths, linear time), `client` (a
small typed client for coconut and tests). Requests are read by `aliecs.wire` (size-bounded,
strictly decoded).
"""

from aliecs.server.client import ControlClient
from aliecs.server.service import ControlServer, ControlService

__all__ = ["ControlClient", "ControlServer", "ControlService"]
