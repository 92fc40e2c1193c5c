"""The soak's Subscribe client, in a process of its own so that only the core is measured.

Driven line by line on stdin by `bench.soak.soak_subscribe`: `open` connects to the control API
given on the command line and starts a Subscribe stream (answers `opened`); `close` closes the
connection mid-stream, as a closed GUI or CLI does (answers `closed`). The soak watches the core's
event bus to know when the stream is registered and when it is gone. End of input: exit.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aliecs.server import ControlClient


async def serve(address: str) -> None:
    loop = asyncio.get_running_loop()
    client: ControlClient | None = None
    reader: asyncio.Future[Any] | None = None
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if line == "open" and client is None:
            client = ControlClient(address, timeout=10)
            reader = asyncio.ensure_future(anext(aiter(client.subscribe()), None))
            answer = "opened"
        elif line == "close" and client is not None and reader is not None:
            client.close()
            await asyncio.gather(reader, return_exceptions=True)
            client, reader = None, None
            answer = "closed"
        else:
            answer = f"unexpected command {line!r}"
        print(answer, flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.subscribe_client HOST:PORT")
    asyncio.run(serve(sys.argv[1]))
