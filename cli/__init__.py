"""The `rmq` command line (typer). Installed as `rmq.cli`; run it as `rmq` or `python -m rmq`."""
