"""Settings: from the environment, overridden in code (run: python configuration.py)."""

import os

import rmq

# --8<-- [start:settings]
settings = rmq.Settings.from_env()  # every field `name` from RMQ_<NAME>, else its default
print(settings.namespace, settings.visibility_timeout, settings.retention)

app = rmq.App(concurrency=50, visibility_timeout=60)  # keywords win over the environment
shop = rmq.App(settings.replace(namespace="shop"))  # or pass a Settings object

explicit = rmq.Settings.from_env({"RMQ_SEND_TIMEOUT": "5", "RMQ_STRICT_TOPICS": "yes"})
assert explicit.send_timeout == 5.0 and explicit.strict_topics is True

try:
    rmq.Settings.from_env({"RMQ_PREFETCH": "lots"})
except rmq.ConfigError as exc:
    print(exc)  # RMQ_PREFETCH='lots' is not a valid int

print(repr(rmq.Settings(redis_url="redis://app:secret@10.0.0.5:6379/0")).split(",")[0])
# Settings(redis_url='redis://app:***@10.0.0.5:6379/0'   (passwords are never printed)
# --8<-- [end:settings]
assert app.settings.concurrency == 50 and shop.settings.namespace == "shop"
assert settings.namespace == os.environ.get("RMQ_NAMESPACE", "rmq")
