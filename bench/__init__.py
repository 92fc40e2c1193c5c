"""Load benchmarks; run them with `python -m bench` (results in bench/results/latest.json)."""
