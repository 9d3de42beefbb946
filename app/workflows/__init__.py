"""Workflows and their executions as clients see them, apart from the job kind that runs them."""
