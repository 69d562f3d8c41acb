python quickstart.py              # sends three orders
rmq worker run quickstart:app     # bills them; Ctrl-C drains and exits
