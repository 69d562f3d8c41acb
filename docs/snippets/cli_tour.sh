# --8<-- [start:topics]
rmq topic create orders --queues 8           # updateTopic
rmq topic list
rmq topic status orders                      # per queue: length, first and last id, delayed
rmq topic update orders --retention 3d --max-len 1000000   # also --max-age, --dlq-retention
rmq topic update orders --queues 12          # grow only; restart workers to read the new queues
rmq doctor orders                            # eviction policy, AOF, version; node and slot per queue
# --8<-- [end:topics]
# --8<-- [start:send]
rmq send orders '{"id": 1}' --type json --tag paid --key order-1 --property region=eu
echo hello | rmq send orders --sharding-key user-42   # body from stdin; same key, same queue
rmq send orders reminder --delay 30m         # or --delay-level 1..18 (RocketMQ's levels)
rmq consume orders --group billing --from first -n 2   # receive as the group, ack once printed
# --8<-- [end:send]
# --8<-- [start:groups]
rmq group list                               # lag, pending, oldest pending age, consumers, DLQ
rmq group progress orders billing            # consumerProgress, per queue
rmq group consumers orders billing           # consumerConnection: live or dead, pending, idle
rmq group reset-offset orders billing --to-time 2024-05-01T08:00Z --yes   # or --to-first, --to-last
# --8<-- [end:groups]
# --8<-- [start:messages]
rmq message print orders --from 1h -n 50     # printMsg, oldest first (--queue 2: one queue)
rmq message query orders --key order-1       # queryMsgByKey
# --8<-- [end:messages]
# --8<-- [start:dlq]
rmq dlq count orders billing
rmq dlq list orders billing                  # entry, msg_id, reason, attempts, error
rmq dlq replay orders billing --all --to group --dry-run   # --to topic: every group
rmq dlq purge orders billing --older-than 7d --yes         # or entries, or --all
# --8<-- [end:dlq]
# --8<-- [start:more]
rmq transaction count orders                 # half messages per queue (-g: + discarded)
rmq topic trim orders --dry-run              # apply the retention now: removed, kept, held by
rmq --json group progress orders billing     # one JSON document, for scripts
rmq group delete orders billing --yes
rmq topic delete orders --yes
# --8<-- [end:more]
