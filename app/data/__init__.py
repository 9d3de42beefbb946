"""Real work on real data: upload records, table parsing, dataset storage, reports.

Job kinds (``app/jobs/kinds``) and REST modules (``app/api``) are thin over these modules,
which therefore know no transport (``tests/test_layering.py``).
"""
