"""The actor runtime (pykka actors on asyncio) and the actors of the supervision tree."""

from actors.runtime import (
    AskTimeout,
    AsyncActorProxy,
    AsyncActorRef,
    AsyncioActor,
    AsyncioFuture,
    BlockingGetError,
)
from actors.supervision import ChildFailedError, live_actors, stop_all

__all__ = [
    "AskTimeout",
    "AsyncActorProxy",
    "AsyncActorRef",
    "AsyncioActor",
    "AsyncioFuture",
    "BlockingGetError",
    "ChildFailedError",
    "live_actors",
    "stop_all",
]
