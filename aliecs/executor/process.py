"""Operating-system processes of tasks: spawn in their own process group, watch, kill.

Kept apart from OCC and from actors so it can be tested and reasoned about on its own: this module
only knows about commands, environments, log files, exit codes and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import sysconfig
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aliecs.statedir import open_private_log

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one task process."""

    task_id: str
    name: str
    command: str
    arguments: tuple[str, ...] = ()
    shell: bool = False
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    cwd: Path | None = None
    die_with_parent: bool = True

    def display(self) -> str:
        return " ".join([self.command, *self.arguments])

    def env_list(self) -> tuple[str, ...]:
        """The task's own environment variables as `KEY=value` (what the original's command info shows)."""
        return tuple(f"{key}={value}" for key, value in self.env.items())


@dataclass(frozen=True)
class ExitInfo:
    returncode: int
    # How it ended when the exit code cannot be known (a process adopted from an earlier executor).
    detail: str = ""

    @property
    def signal_name(self) -> str | None:
        if self.returncode < 0:
            try:
                return signal.Signals(-self.returncode).name
            except ValueError:
                return f"signal {-self.returncode}"
        return None

    @property
    def clean(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        if self.detail:
            return self.detail
        if self.signal_name:
            return f"killed by {self.signal_name}"
        if self.returncode == 127:
            return "exited with code 127 (command not found)"
        return f"exited with code {self.returncode}"

    def report(self, log_tail: Sequence[str] = ()) -> str:
        """'process <how it ended>', with its last output lines when it left any: what operators read."""
        text = f"process {self.describe()}"
        if log_tail:
            text += "; last output: " + " | ".join(log_tail)
        return text


class LaunchError(RuntimeError):
    """The process could not be started at all (missing command, permission, bad directory)."""


def _scripts_dir() -> str:
    """The directory holding this interpreter's console scripts, so tasks find aliecs' own commands
    even when the virtual environment was not activated."""
    return sysconfig.get_path("scripts") or os.path.dirname(sys.executable)


# What a task inherits from its executor's environment: the basics a program needs to run, nothing
# else. Tokens and core settings (ALIECS_TOKEN, ...) must never reach a task (see the README's security
# notes), so the environment is built up from the task descriptor rather than filtered down.
_INHERITED = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
)


def task_environment(extra: dict[str, str]) -> dict[str, str]:
    """A task's environment: the inherited basics, aliecs' scripts on PATH, then the descriptor's."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    scripts = _scripts_dir()
    path = env.get("PATH", "")
    if scripts not in path.split(os.pathsep):
        env["PATH"] = scripts + (os.pathsep + path if path else "")
    env.update(extra)
    return env


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """`preexec_fn` of a child that must not outlive its parent (SIGKILL when the parent dies)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class TaskProcess:
    """One running task process. Its stdout and stderr go to a log file whose tail explains crashes."""

    def __init__(self, spec: LaunchSpec, pid: int) -> None:
        self.spec = spec
        self._pid = pid
        # Resolved when the process ends; how that is noticed depends on how it was started.
        self._exit: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self._watcher: asyncio.Future[None] | None = None

    @classmethod
    async def spawn(cls, spec: LaunchSpec) -> TaskProcess:
        env = task_environment(spec.env)
        log = None
        if spec.log_path is not None:
            log = os.fdopen(open_private_log(spec.log_path), "ab")  # 0600 in a 0700 directory
        try:
            preexec = die_with_parent if spec.die_with_parent and sys.platform == "linux" else None
            common = {
                "stdin": asyncio.subprocess.DEVNULL,
                "stdout": log if log is not None else asyncio.subprocess.DEVNULL,
                "stderr": asyncio.subprocess.STDOUT if log is not None else asyncio.subprocess.DEVNULL,
                "env": env,
                "cwd": str(spec.cwd) if spec.cwd else None,
                "start_new_session": True,
                "preexec_fn": preexec,
            }
            if spec.shell:
                line = " ".join([spec.command, *spec.arguments])
                process = await asyncio.create_subprocess_shell(line, **common)  # type: ignore[arg-type]
            else:
                process = await asyncio.create_subprocess_exec(
                    spec.command,
                    *spec.arguments,
                    **common,  # type: ignore[arg-type]
                )
        except FileNotFoundError as exc:
            raise LaunchError(f"command {spec.command!r} not found (PATH={env.get('PATH', '')})") from exc
        except PermissionError as exc:
            raise LaunchError(f"command {spec.command!r} is not executable: {exc}") from exc
        except OSError as exc:
            raise LaunchError(f"cannot start {spec.command!r}: {exc}") from exc
        finally:
            if log is not None:
                log.close()
        started = cls(spec, process.pid)
        started._watcher = asyncio.ensure_future(started._reap(process))
        return started

    async def _reap(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if not self._exit.done():
            self._exit.set_result(ExitInfo(code))

    @classmethod
    def adopt(cls, spec: LaunchSpec, pid: int) -> TaskProcess:
        """A task process started by an earlier executor of this node, watched through a pidfd.

        It is not our child, so its exit code cannot be read; its exit is still noticed at once (the
        pidfd becomes readable) and it is signalled through its process group like any task process."""
        adopted = cls(spec, pid)
        loop = asyncio.get_running_loop()
        fd = os.pidfd_open(pid)

        def gone() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            if not adopted._exit.done():
                adopted._exit.set_result(ADOPTED_EXIT)

        loop.add_reader(fd, gone)
        return adopted

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def exit_info(self) -> ExitInfo | None:
        return self._exit.result() if self._exit.done() else None

    @property
    def alive(self) -> bool:
        return not self._exit.done()

    def exited(self) -> asyncio.Future[ExitInfo]:
        """A future resolved when the process ends (shielded: cancelling a waiter does not affect it)."""
        return self._exit

    async def wait(self, timeout: float | None = None) -> ExitInfo | None:
        """The exit info, or None if the process is still alive after `timeout` seconds."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._exit), timeout)
        except TimeoutError:
            return None

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the whole process group: shell-wrapped commands and their children go too."""
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, sig)

    async def terminate(self, term_grace: float = 2.0, int_grace: float = 3.0) -> ExitInfo:
        """SIGTERM, then SIGINT, then SIGKILL to the group, each after its grace period (as the original)."""
        for sig, grace in ((signal.SIGTERM, term_grace), (signal.SIGINT, int_grace)):
            if not self.alive:
                break
            self.signal_group(sig)
            if await self.wait(grace) is not None:
                break
        if self.alive:
            self.signal_group(signal.SIGKILL)
        info = await self._exit
        # Stragglers in the group (a shell's children) must not outlive the task.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signal.SIGKILL)
        return info

    def log_tail(self, lines: int = 5) -> list[str]:
        return read_log_tail(self.spec.log_path, lines)


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if
    it is gone: together with the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


ADOPTED_EXIT = ExitInfo(
    -1, detail="ended (exit code unknown: the process was adopted from an earlier executor)"
)


def read_log_tail(path: Path | None, lines: int = 5) -> list[str]:
    """The last non-blank lines of a task's log file (at most 8 KiB is read)."""
    if path is None or not path.exists():
        return []
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 8192))
        text = handle.read().decode(errors="replace")
    return list(deque((line for line in text.splitlines() if line.strip()), maxlen=lines))
