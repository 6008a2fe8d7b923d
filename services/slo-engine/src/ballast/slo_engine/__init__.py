"""Ballast slo-engine service."""
