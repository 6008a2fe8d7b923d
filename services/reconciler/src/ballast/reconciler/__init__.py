"""Ballast reconciler service."""
