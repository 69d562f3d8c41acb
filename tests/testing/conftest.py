"""example/ is a user's project with its own conftest.py: test_example.py runs it in a pytest
process of its own, as its owner would, so this suite does not collect it."""

collect_ignore = ["example"]
