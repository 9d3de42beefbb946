"""Job kinds; importing this package registers every kind."""

from . import api_test, batch_execution, batch_report, data_import, external, file_upload, simulate, workflow  # noqa: F401
