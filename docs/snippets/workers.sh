# --8<-- [start:run]
rmq worker run workers.orders:app --processes 4 --metrics-port 9464 --health-port 9465
rmq worker run workers.orders:app --concurrency 50 --loop asyncio --log-level DEBUG
RMQ_LOG_FORMAT=json rmq worker run workers.orders:app   # one JSON object per log line
# --8<-- [end:run]
# --8<-- [start:check]
rmq worker check workers.orders:app          # exit 0 or 1, for container health checks
rmq metrics serve --port 9466                # standalone exporter of the Redis state
# --8<-- [end:check]
