"""Tests of the `rmq` command line, through typer's CliRunner and as real subprocesses."""
