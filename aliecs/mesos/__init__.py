"""Apache Mesos support: the wire pieces aliecs needs to run as a Mesos framework with a custom executor.

aliecs speaks the Mesos **v1 HTTP APIs** (scheduler and executor, JSON over HTTP with RecordIO-framed
event streams) with aiohttp, instead of a Mesos client library: pymesos cannot be installed on Python 3.11
and is thread-based. The modules here follow apache/mesos's published API (include/mesos/v1/*.proto and
docs/*-http-api.md) field by field.
"""
