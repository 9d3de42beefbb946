"""API test cases (seed 003): YAML specs, the step engine, hosts allowlist, secret masking.

Nothing here knows about transports or jobs: ``engine.run_case`` reports through a
callback, so the ``api_test`` job kind and the ``run-cases`` CLI share one engine.
"""
