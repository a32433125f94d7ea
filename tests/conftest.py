"""Shared pytest configuration."""

from hypothesis import HealthCheck, settings

# CI machines are shared and noisy: no deadlines, a fixed budget of examples.
settings.register_profile("meshcore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("meshcore")

# The store's shared fixture (`store`) and helpers.
pytest_plugins = ["_storage_helpers"]
