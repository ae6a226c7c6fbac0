"""Metrics, logging and console output shared by every process."""
