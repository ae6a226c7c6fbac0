"""Metrics, logging and console output shared by every process."""
from telemetry.metrics import start_exporter

__all__ = ["start_exporter"]
