"""Flows and steps: definitions, validation and DAG levels (no execution here)."""
