"""coconut's progress line, fed by hand: deadline, tasks done / pending / in ERROR, names shown."""

from __future__ import annotations

from aliecs.cli.coconut_progress import Progress
from aliecs.generated import events as events_pb
from aliecs.generated import o2control as pb


def task_event(task_id: str, state: str) -> events_pb.Event:
    return events_pb.Event(
        task_event=events_pb.EvTaskEvent(taskid=task_id, name=f"env.{task_id}", state=state)
    )


def test_progress_line() -> None:
    now = [100.0]
    env = pb.EnvironmentInfo(
        tasks=[pb.ShortTaskInfo(task_id=f"t{i}", name=f"env.t{i}", state="CONFIGURED") for i in range(5)],
        user_vars={"start_activity_timeout": "1m"},
    )
    progress = Progress("START_ACTIVITY", env, clock=lambda: now[0])
    assert progress.text() == (
        "START_ACTIVITY: 0.0s of 60s deadline · tasks 0 RUNNING / 5 pending"
        " · waiting for env.t0, env.t1, env.t2, ..."
    )
    now[0] += 2.5
    progress.apply(task_event("t0", "RUNNING"))
    progress.apply(task_event("t1", "RUNNING"))
    progress.apply(task_event("t2", "ERROR"))
    step = events_pb.EvEnvironmentEvent(
        transition="START_ACTIVITY",
        transition_step="before_START_ACTIVITY",
        message="transition step starting",
    )
    step.transition_status = events_pb.OpStatus.ONGOING
    progress.apply(events_pb.Event(environment_event=step))
    assert progress.text() == (
        "START_ACTIVITY: 2.5s of 60s deadline · step before_START_ACTIVITY · tasks 2 RUNNING / 2 pending"
        " / 1 ERROR · waiting for env.t3, env.t4"
    )
    assert Progress("CONFIGURE", pb.EnvironmentInfo(vars={"configure_timeout": "x"})).deadline is None
    assert Progress("CONFIGURE", pb.EnvironmentInfo()).deadline == 120.0
