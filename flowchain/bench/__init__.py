"""Measurement programs behind ``flowchain bench ...``: each compares FlowChain with the
simplest code doing the same work, measured in the same run (see docs/benchmarks.md)."""
