"""Job kinds; importing this package registers every kind."""

from . import simulate, workflow  # noqa: F401
