"""chatledger's benchmark suite: SqliteStore beside raw sqlite3 and two peer libraries.

Run it from the repository root with ``python -m benchmarks`` (``make bench``),
``--quick`` for a smoke run, ``--out docs/benchmarks.md`` to record the results.
"""
