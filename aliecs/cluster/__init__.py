"""The embedded local cluster: simulated nodes on this machine, their resources and ports."""
