"""Ballast policy-gate service."""
