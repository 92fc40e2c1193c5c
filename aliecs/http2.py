"""How much an HTTP/2 connection remembers of its closed streams: 1,024, not h2's 65,536.

h2 keeps a record (stream id -> who closed it) of up to `H2Connection.MAX_CLOSED_STREAMS` closed
streams per connection, to answer late frames precisely. Every gRPC call is a stream, and the core
keeps one connection per executor for months (a heartbeat a second, a batch per step): each record
costs about 115 bytes, so each connection's memory grew by ~7.5 MB over its first 65,536 calls (18
hours of heartbeats alone), on the core and on the executor alike. The soak benchmark measured it as
the core's RSS growth (2.8 KB per cycle over 1,000 cycles, the Python heap growing with it) and the
executors' (1.3 KB). A gRPC peer sends nothing on a stream long after it closed; the last 1,024 are
plenty. Importing this module sets the bound for every connection the process opens afterwards.
"""

from __future__ import annotations

from h2.connection import H2Connection

#: Closed streams remembered per HTTP/2 connection.
MAX_CLOSED_STREAMS = 1024

H2Connection.MAX_CLOSED_STREAMS = MAX_CLOSED_STREAMS
