# --8<-- [start:run]
rmq worker run workers.orders:app --processes 4 --metrics-port 9464 --health-port 9465
rmq worker run workers.orders:app --concurrency 50 --loop asyncio --log-level DEBUG
RMQ_LOG_FORMAT=json rmq worker run workers.orders:app   # one JSON object per log line
# --8<-- [end:run]
# --8<-- [start:check]
rmq worker check workers.orders:app          # exit 0 or 1, for container health checks
rmq metrics serve --port 9466                # standalone exporter of the Redis state
# --8<-- [end:check]
# --8<-- [start:flags]
rmq worker run workers.orders:app --only orders/billing   # some consumers only (repeatable)
rmq worker run workers.orders:app --burst    # consume what is there, drain, exit 0 (batch jobs, CI)
rmq worker run tests.apps.lifecycle_app:create_app --factory   # the target returns the App
rmq worker run workers.orders:app --reload   # restart when a .py file of its package changes
# --8<-- [end:flags]
# --8<-- [start:web]
python -m workers.web_wsgi                   # a WSGI front end sending with rmq.sync (port 8000)
# --8<-- [end:web]
