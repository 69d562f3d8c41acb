"""Runnable example workers (deployable examples, not part of the installed package).

Run one with `rmq worker run workers.orders:app`; `make demo` (`python -m workers.demo`) runs a
producer and the orders worker end to end.
"""
