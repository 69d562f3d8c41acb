make bench                                       # the whole suite, about 6-10 minutes
.venv/bin/python bench/run_all.py --no-peers     # raw and rmq only
.venv/bin/python bench/core.py --quick           # in-process rmq vs raw, seconds
.venv/bin/python bench/sync.py                   # the blocking client vs sync redis-py XADD
.venv/bin/python bench/otel.py --baseline-commit HEAD~1   # tracing off, on, and no hooks
rmq bench produce --count 100000 --concurrency 100    # against your own Redis (RMQ_REDIS_URL)
rmq bench consume --count 100000
rmq bench e2e --rate 2000 --duration 10
rmq bench delay --rate 1000 --delay 1
