"""Port allocation from configured ranges.

Simulated nodes all live on this machine, so a port is handed out only if no node of the same
cluster holds it (one `PortReservations` per cluster, shared by all its nodes and allocators) and
the operating system lets us bind it right now (another program, another core, or a test running
next to us, may own it). The last check cannot rule out a race with a foreign process, but it turns
the common collision into a skip instead of a task that fails to start.

The reservations belong to whoever owns the cluster (the local cluster actor makes one), never to
the process: two cores in one process (the embedded API used twice, a test suite) keep separate
books and meet only at the operating system's bind check, as two cores on one machine would.

Ports in the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by
default) are where the kernel picks the local port of every outgoing connection, so any of them can
be taken between our check and the task's bind. The default ranges (control 30000-30999, data
20000-20999) lie below it; when a configured range overlaps it anyway (a machine with a widened
ephemeral range), the allocator warns once, naming both ranges, and hands out the range's ports
outside the ephemeral range first.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.last < 65536):
            raise ValueError(f"invalid port range {self.first}-{self.last}")

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """Parse '30000-30999' (or a single port)."""
        first, _, last = text.partition("-")
        try:
            return cls(int(first), int(last or first))
        except ValueError as exc:
            raise ValueError(f"invalid port range {text!r}: expected FIRST-LAST") from exc

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> PortRange | None:
    """The kernel's ephemeral port range, None when it cannot be read (not Linux)."""
    try:
        first, last = (int(part) for part in path.read_text().split()[:2])
        return PortRange(first, last)
    except (OSError, ValueError):
        return None


def overlap(a: PortRange, b: PortRange) -> bool:
    return a.first <= b.last and b.first <= a.last


class PortExhaustedError(RuntimeError):
    pass


class PortUnavailableError(RuntimeError):
    """A static port a task wants is held by another task of this cluster or by a foreign program."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is not free")
        self.port = port


@functools.lru_cache(maxsize=256)
def parse_port_list(expression: str, descriptor: str) -> tuple[int, ...]:
    """The ports of a `wants.ports` expression such as '29000-29100,30000', sorted, without duplicates.

    Cached: a descriptor is shared by many tasks and deployed again and again, and its expression
    never changes, so each is expanded once. `descriptor` names the task class in the error (and is
    part of the cache key so that the error message always names the right one).
    """
    ports: set[int] = set()
    for part in expression.replace(" ", "").split(","):
        if not part:
            continue
        try:
            span = PortRange.parse(part)
        except ValueError as exc:
            raise ValueError(f"{descriptor}: wants.ports {expression!r}: {exc}") from None
        ports.update(range(span.first, span.last + 1))
    return tuple(sorted(ports))


def port_bindable(port: int) -> bool:
    """Whether a TCP port of this machine can be bound now (nothing listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortReservations:
    """The ports one cluster holds on this machine: its tasks' static ports (`wants.ports`) and
    every port its allocators handed out.

    All simulated nodes of a local cluster are this machine, so they share one: a static port held
    by a task on one node is taken on every node, and dynamic allocators skip it, so a task's static
    port is never handed out as another task's control or data port.
    """

    def __init__(self) -> None:
        self._held: set[int] = set()

    def __contains__(self, port: object) -> bool:
        return port in self._held

    def free(self, port: int) -> bool:
        """Whether a wanted static port could be reserved now: no task of this cluster holds it and
        the operating system lets us bind it."""
        return port not in self._held and port_bindable(port)

    def reserve(self, ports: Iterable[int]) -> tuple[int, ...]:
        """Reserve all of `ports` or none: raises PortUnavailableError naming the first that is taken."""
        wanted = tuple(ports)
        for port in wanted:
            if not self.free(port):
                raise PortUnavailableError(port)
        self._held.update(wanted)
        return wanted

    def hold(self, port: int) -> None:
        """Mark one port as held without checking it (an allocator's pick, or a port a running task
        holds and so cannot be bound)."""
        self._held.add(port)

    def release(self, ports: Iterable[int]) -> None:
        """Give back ports taken by `reserve` or `hold`."""
        self._held.difference_update(ports)


class PortAllocator:
    """Hands out the lowest free port of a range (as the original does) and takes it back on release.

    It skips the ports its `reservations` hold and records its own there: pass the cluster's, so
    that all allocators of the cluster's nodes (and its static ports) see each other. Without one,
    the allocator keeps a book of its own.
    """

    def __init__(
        self,
        ports: PortRange,
        owner: str,
        ephemeral: PortRange | None = None,
        reservations: PortReservations | None = None,
    ) -> None:
        self.ports = ports
        self.owner = owner
        self.reservations = reservations if reservations is not None else PortReservations()
        self.ephemeral = ephemeral if ephemeral is not None else ephemeral_range()
        self._mine: set[int] = set()
        self._next = ports.first
        if self.ephemeral is not None and overlap(ports, self.ephemeral):
            log.warning(
                "%s: port range %s overlaps the kernel's ephemeral range %s (%s): outgoing connections "
                "may take its ports; configure a range outside it in the inventory",
                owner,
                ports,
                self.ephemeral,
                EPHEMERAL_RANGE_FILE,
            )

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._mine)

    def _ephemeral(self, port: int) -> bool:
        return self.ephemeral is not None and self.ephemeral.first <= port <= self.ephemeral.last

    def _candidates(self) -> Iterator[int]:
        """The range's ports in turn from the last one handed out; ephemeral ones last."""
        span = len(self.ports)
        start = self._next - self.ports.first
        order = (self.ports.first + (start + offset) % span for offset in range(span))
        if self.ephemeral is None or not overlap(self.ports, self.ephemeral):
            yield from order
            return
        later = []
        for port in order:
            if self._ephemeral(port):
                later.append(port)
            else:
                yield port
        yield from later

    def allocate(self) -> int:
        for port in self._candidates():
            if port in self.reservations or not port_bindable(port):
                continue
            self.reservations.hold(port)
            self._mine.add(port)
            # Rotate instead of always restarting at the bottom: a port just released may still be
            # in TIME_WAIT or held by a process that is shutting down.
            self._next = port + 1 if port < self.ports.last else self.ports.first
            return port
        raise PortExhaustedError(f"{self.owner}: no free port left in range {self.ports}")

    def take(self, port: int) -> None:
        """Mark a port as allocated that a task still holds (restoring after a restart of the core)."""
        self.reservations.hold(port)
        self._mine.add(port)

    def release(self, port: int) -> None:
        if port in self._mine:
            self._mine.discard(port)
            self.reservations.release((port,))

    def release_all(self) -> None:
        for port in list(self._mine):
            self.release(port)
