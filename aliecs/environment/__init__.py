"""Environment domain logic that does not depend on the actor runtime: FSM, aggregation, run numbers."""
