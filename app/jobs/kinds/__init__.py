"""Job kinds; importing this package registers every kind."""

from . import simulate  # noqa: F401
