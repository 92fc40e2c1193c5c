"""The executor: starts task processes on a node, drives them over OCC and kills them cleanly."""
