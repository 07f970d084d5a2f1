"""Metrics, structured logs and profiling of the service."""
