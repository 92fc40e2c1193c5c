"""Command-line tools: coconut (core), peanut (one OCC process), aliecs-core, aliecs-executor."""
