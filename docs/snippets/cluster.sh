RMQ_REDIS_URL=redis://user:secret@10.0.0.11:6379/0 rmq worker run workers.orders:app
rmq topic create orders -q 16                # at least as many queues as primaries
