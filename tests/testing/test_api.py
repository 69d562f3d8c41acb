"""rmq.testing's public API: a sorted `__all__` of importable names, and the plugin's fixtures."""

from __future__ import annotations

import rmq.testing
import rmq.testing.fixtures


def test_all_is_sorted_and_importable() -> None:
    assert rmq.testing.__all__ == sorted(rmq.testing.__all__)
    for name in rmq.testing.__all__:
        assert getattr(rmq.testing, name) is not None


def test_the_plugin_module_brings_the_fixtures() -> None:
    assert rmq.testing.pytest_plugins == ["rmq.testing.fixtures"]
    fixtures = [n for n in rmq.testing.fixtures.__all__ if n.startswith("rmq_")]
    assert fixtures == sorted(rmq.testing.fixtures.__all__)
    assert set(fixtures) == {
        "rmq_app", "rmq_bind", "rmq_namespace", "rmq_redis_url", "rmq_run_until_idle",
        "rmq_server", "rmq_settings",
    }  # fmt: skip
