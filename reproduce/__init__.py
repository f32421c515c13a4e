"""Orchestration: profiles -> runs (records) -> paper_tables/.

``python -m reproduce table1 --profile fashion_mnist`` and friends; see
``python -m reproduce --help``.  Records are data, tables are pure functions
of records.
"""
