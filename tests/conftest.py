"""Shared test set-up: every test starts from an empty gin config, so no test sees bindings that another one parsed."""
import gin
import pytest


@pytest.fixture(autouse=True)
def _empty_gin_config():
    gin.clear_config()          # also unlocks it, so a module imported later can still register its configurables
    yield
