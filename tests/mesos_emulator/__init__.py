"""A Mesos master and agents in one process, for tests and demos: `python -m tests.mesos_emulator`.

It speaks the published Mesos v1 APIs (apache/mesos include/mesos/v1/scheduler/scheduler.proto,
executor/executor.proto, mesos.proto, docs/scheduler-http-api.md, docs/executor-http-api.md,
docs/recordio.md): JSON calls, RecordIO event streams, `Mesos-Stream-Id`, the status codes and error
texts of the real master and agent. A framework written against Mesos subscribes, receives offers,
launches its custom executor as a real process on an emulated agent, and gets its status updates.

Covered
- Scheduler API: SUBSCRIBE (SUBSCRIBED, HEARTBEAT), OFFERS from every agent (attributes `machine_id`
  plus configured ones; resources cpus, mem, ports), ACCEPT with LAUNCH and LAUNCH_GROUP (task
  validation answered with TASK_ERROR, invalid offers with TASK_LOST/TASK_DROPPED), DECLINE with
  filters (refuse_seconds honoured, default 5 s, unused resources of an ACCEPT filtered too), REVIVE,
  SUPPRESS, KILL, SHUTDOWN, ACKNOWLEDGE, RECONCILE (explicit and implicit), MESSAGE, TEARDOWN,
  UPDATE_FRAMEWORK; RESCIND, UPDATE, FAILURE, ERROR events; a standby master answering 307; framework
  failover within failover_timeout (after it the framework's executors are shut down).
- Agents: resources accounted while tasks and executors run and offered again after they end; the
  executor HTTP API on each agent's own port (SUBSCRIBE with unacknowledged updates, UPDATE, MESSAGE;
  events SUBSCRIBED, LAUNCH, LAUNCH_GROUP, KILL, ACKNOWLEDGED, MESSAGE, SHUTDOWN, HEARTBEAT); the
  executor started as a real process with the MESOS_* environment in a sandbox directory; status
  updates kept and retried until the framework acknowledges them.
- Faults (Python API `Emulator` and the admin HTTP API): lose an agent, restart an agent, kill
  executors, restart the master, rescind offers.

Simplified (where a real cluster behaves differently)
- JSON only (no application/x-protobuf), no authentication, no roles or reservations (every
  resource is "*"), no quota, weights, maintenance, inverse offers or operation feedback; operations
  other than LAUNCH and LAUNCH_GROUP are accepted and ignored. No command executor and no default
  executor: a TaskInfo must carry a CUSTOM ExecutorInfo. SUBSCRIBE's offer_constraints are ignored
  (every agent is offered to every framework). No offer_timeout; one allocation per
  `allocation_interval` (1 s) plus one right after anything that frees resources.
- A container is the executor's process tree (no cgroups, namespaces or images). Task processes that
  start their own session are only killed with their executor if they die with their parent.
- A lost agent is gone for good (its machine died: its executors and tasks are killed, and it never
  re-registers). Master-generated updates carry no uuid, as in Mesos.
- A master restart keeps frameworks, agents and tasks (what the new leader would learn from its
  registry and from re-registering agents); outstanding offers become invalid; every framework's
  failover timeout starts at the restart.
- An agent restart keeps its status update streams (as with checkpointing) and the executors of
  checkpointing frameworks; the other frameworks' executors are destroyed (tasks TASK_LOST). The
  unacknowledged_tasks of a re-subscribing executor are not cross-checked against the agent's.
- Status updates are retried every `update_retry_interval` (10 s, no backoff) and at once when the
  framework re-subscribes.
"""

from tests.mesos_emulator.agent import AgentTimings
from tests.mesos_emulator.cluster import Emulator, EmulatorConfig, EmulatorError

__all__ = ["AgentTimings", "Emulator", "EmulatorConfig", "EmulatorError"]
