"""Real work on real data: upload receiving, table parsing, dataset storage, reports.

Job kinds (``app/jobs/kinds``) and REST modules (``app/api``) are thin over these modules.
"""
