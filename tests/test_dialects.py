"""Seed dialects as pure functions: shapes, filters and when a socket closes."""

from __future__ import annotations

from app.realtime.dialects import Close
from app.realtime.dialects.batch import batch_adapter, batch_update
from app.realtime.dialects.client import ClientDialect
from app.realtime.dialects.executions import ExecutionDialect
from app.realtime.messages import make_message
from app.realtime.rooms import batch_room


def test_batch_update_has_the_documented_shape_and_zero_for_missing_counts():
    update = batch_update(7, "running", {"success_count": 2, "total_count": 5}, "2026-01-01T00:00:00.000Z")
    assert update == {
        "type": "batch_execution_update",
        "batch_execution_id": 7,
        "data": {
            "status": "running",
            "success_count": 2,
            "failed_count": 0,
            "running_count": 0,
            "pending_count": 0,
            "total_count": 5,
            "updated_at": "2026-01-01T00:00:00.000Z",
        },
        "timestamp": "2026-01-01T00:00:00.000Z",
    }


def test_batch_adapter_follows_status_and_counts_and_ignores_other_events():
    job_id = 987_654
    pending = make_message("job_status", {"status": "pending"}, job_id=job_id, seq=1)
    counts = make_message("job_counts", {"success_count": 1, "total_count": 3}, job_id=job_id, seq=2)
    log = make_message("job_log", {"level": "info", "message": "x"}, job_id=job_id, seq=3)
    done = make_message("job_status", {"status": "completed"}, job_id=job_id, seq=4)
    assert batch_adapter(pending, 1)[0][0] == [batch_room(job_id)]
    ((_rooms, event, update),) = batch_adapter(counts, 1)
    assert event == "batch_execution_update"
    assert update["data"]["status"] == "pending" and update["data"]["success_count"] == 1
    assert batch_adapter(log, 1) == []
    ((_rooms, _event, final),) = batch_adapter(done, 1)
    assert final["data"]["status"] == "completed" and final["data"]["total_count"] == 3


def test_batch_adapter_renders_a_job_first_seen_mid_life_from_its_messages_alone():
    counts = make_message(
        "job_counts", {"success_count": 2, "running_count": 1, "total_count": 3}, job_id=987_655, seq=9
    )
    ((_rooms, _event, update),) = batch_adapter(counts, 1)
    assert update["data"]["status"] == "running" and update["data"]["running_count"] == 1  # counts mean running
    result = {"total_count": 4, "success_count": 3, "failed_count": 1, "cases": []}
    done = make_message("job_status", {"status": "completed", "result": result}, job_id=987_656, seq=12)
    ((_rooms, _event, final),) = batch_adapter(done, 1)
    assert final["data"] == {
        "status": "completed",
        "success_count": 3,
        "failed_count": 1,
        "running_count": 0,
        "pending_count": 0,
        "total_count": 4,
        "updated_at": done["timestamp"],
    }


def test_client_dialect_passes_only_the_three_progress_types_and_notices():
    dialect = ClientDialect("tab")
    report = make_message("batch_report_progress", {"current": 3, "total": 10, "percent": 30.0}, job_id=5)
    upload = make_message("file_upload_progress", {"current": 1, "total": 2}, job_id=6)
    notice = make_message("dataset_ready", {"id": 1})
    status = make_message("job_status", {"status": "running"}, job_id=5, seq=2)
    other = make_message("job_progress", {"current": 1}, job_id=5)
    assert [dialect.wants(m) for m in (report, upload, notice, status, other)] == [True, True, True, False, False]
    (rendered,) = dialect.render(None, report)  # type: ignore[arg-type]
    assert rendered["progress"] == 3 and rendered["total"] == 10 and rendered["timestamp"]
    assert "progress" not in dialect.render(None, upload)[0]  # type: ignore[arg-type,index]


def test_execution_dialect_sends_status_on_change_and_closes_after_the_end():
    dialect = ExecutionDialect("9")
    dialect.execution_id = 9
    dialect._first({"status": "pending", "progress": None, "message": None, "result": None, "error": None})
    running = make_message("job_status", {"status": "running"}, job_id=9, seq=2)
    tick = make_message("job_progress", {"current": 50, "total": 100, "percent": 50.0, "message": "half"}, job_id=9)
    same_tick = make_message("job_progress", {"current": 50, "total": 100, "percent": 50.4}, job_id=9)
    done = make_message("job_status", {"status": "completed", "result": {"ok": 1}}, job_id=9, seq=3)
    assert [m["status"] for m in dialect.render(None, running)] == ["running"]  # type: ignore[arg-type,index]
    (status,) = dialect.render(None, tick)  # type: ignore[arg-type]
    assert status["progress"] == 50 and status["message"] == "half"
    assert dialect.render(None, same_tick) == []  # type: ignore[arg-type]
    final, close = dialect.render(None, done)  # type: ignore[arg-type]
    assert final["status"] == "completed" and final["progress"] == 100 and final["result"] == {"ok": 1}
    assert final["execution_time"] is not None and close == Close(1000, "execution completed")
    assert dialect.render(None, tick) == []  # type: ignore[arg-type]
