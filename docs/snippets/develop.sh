# --8<-- [start:install]
pip install -e .            # or: make install, then . .venv/bin/activate
# --8<-- [end:install]
# --8<-- [start:make]
make demo                   # a producer sends 2,000 orders, a worker process bills them
make test                   # ruff, mypy, then the whole suite against redis-server and Valkey 8
make docs                   # this site, in strict mode (site/)
# --8<-- [end:make]
