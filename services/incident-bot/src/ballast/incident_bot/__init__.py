"""Ballast incident-bot service."""
