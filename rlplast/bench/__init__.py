"""Throughput benchmarks, each measured side by side in one process."""
