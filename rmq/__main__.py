"""`python -m rmq` runs the rmq command line."""

from rmq.cli.main import main

main()
