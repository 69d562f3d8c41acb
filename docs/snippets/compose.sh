docker compose -f compose/compose.yaml up -d                     # Redis, exporter, Prometheus, Grafana
docker compose -f compose/compose.yaml --profile workers up -d   # + workers.orders and traffic
rmq -u redis://127.0.0.1:6380/0 group progress orders billing    # the compose Redis, from the host
