"""Ballast chaos-runner service."""
