# --8<-- [start:payments]
python -m workers.payments                    # 200 orders, then a summary; exit 0 when settled
PAYMENTS_ORDERS=1000 python -m workers.payments
# --8<-- [end:payments]
# --8<-- [start:orders]
make demo                                     # workers.demo: 2,000 orders billed by workers.orders
rmq worker run workers.orders:app --processes 2
# --8<-- [end:orders]
