"""Code generated from protos/*.proto by ``make protos`` (python -m aliecs.protos_build).

Do not edit: change the .proto file and regenerate. A test fails when this package is stale.
"""
