"""Job kinds; importing this package registers every kind."""

from . import api_test, batch_execution, simulate  # noqa: F401
