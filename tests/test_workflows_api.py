"""``/api/workflows`` and ``/api/v1/executions`` in-process (threading mode), and references."""

from __future__ import annotations

import pytest

from app.errors import ValidationFailed
from app.jobs.kinds.workflow import UnresolvedReference, resolve, validate_steps
from app.realtime.dialects.executions import ExecutionDialect
from app.workflows.executions import execution_time
from tests.helpers import wait_for

STEPS = [
    {"kind": "simulate", "params": {"steps": "${input.n}", "interval": 0.01, "log_every": 0}},
    {"kind": "simulate", "params": {"steps": "${steps.0.result.steps}", "interval": 0.01, "log_every": 0}},
]


def create(client, headers, steps=STEPS, name="nightly"):
    return client.post("/api/workflows", json={"name": name, "steps": steps}, headers=headers)


def test_create_list_get_and_delete_a_workflow(client, auth):
    headers = auth.headers(auth.token_for("alice"))
    created = create(client, headers)
    assert created.status_code == 201
    workflow = created.get_json()["workflow"]
    assert workflow["name"] == "nightly" and workflow["steps"][0]["kind"] == "simulate"
    assert [w["id"] for w in client.get("/api/workflows", headers=headers).get_json()["workflows"]] == [workflow["id"]]
    assert client.get(f"/api/workflows/{workflow['id']}", headers=headers).get_json()["workflow"] == workflow
    assert client.delete(f"/api/workflows/{workflow['id']}", headers=headers).status_code == 204
    assert client.get(f"/api/workflows/{workflow['id']}", headers=headers).status_code == 404


def test_another_users_workflow_is_not_found(client, auth):
    alice, bob = auth.headers(auth.token_for("alice")), auth.headers(auth.token_for("bob"))
    workflow_id = create(client, alice).get_json()["workflow"]["id"]
    assert client.get(f"/api/workflows/{workflow_id}", headers=bob).status_code == 404
    assert client.delete(f"/api/workflows/{workflow_id}", headers=bob).status_code == 404
    assert client.get("/api/workflows", headers=bob).get_json()["workflows"] == []
    response = client.post("/api/v1/executions", json={"workflow_id": workflow_id}, headers=bob)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("steps", "code"),
    [
        ([], "validation_error"),
        ([{"kind": "no_such_kind"}], "validation_error"),
        ([{"kind": "workflow", "params": {}}], "validation_error"),
        ([{"kind": "simulate", "params": {"steps": "${steps.0.result.steps}"}}], "invalid_reference"),
        ([{"kind": "simulate", "params": {"steps": "${nowhere.x}"}}], "invalid_reference"),
        ([{"kind": "simulate", "params": {}, "extra": 1}], "validation_error"),
    ],
)
def test_bad_workflows_are_a_400_with_a_code(client, auth, steps, code):
    response = create(client, auth.headers(auth.token_for("alice")), steps=steps)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code


def test_an_execution_runs_the_steps_with_references_resolved(client, auth):
    headers = auth.headers(auth.token_for("alice"))
    workflow_id = create(client, headers).get_json()["workflow"]["id"]
    response = client.post(
        "/api/v1/executions", json={"workflow_id": str(workflow_id), "input_data": {"n": 3}}, headers=headers
    )
    assert response.status_code == 201
    execution = response.get_json()
    assert execution["status"] == "pending" and execution["input_data"] == {"n": 3}

    def finished():
        body = client.get(f"/api/v1/executions/{execution['id']}", headers=headers).get_json()
        return body if body["status"] in {"completed", "failed"} else None

    done = wait_for(finished, timeout=30)
    assert done["status"] == "completed" and done["progress"] == 100
    assert done["result"] == {"output": {"steps": 3}, "steps": [{"steps": 3}, {"steps": 3}]}
    assert done["execution_time"] > 0
    listed = client.get("/api/v1/executions", headers=headers).get_json()["executions"]
    assert [e["id"] for e in listed] == [execution["id"]]
    assert listed[0]["execution_time"] == done["execution_time"]

    # The seed-004 socket renders the same execution_time from the messages alone.
    events = client.get(f"/api/jobs/{execution['id']}/events", headers=headers).get_json()["events"]
    dialect = ExecutionDialect(str(execution["id"]))
    dialect.execution_id = execution["id"]
    dialect._first({"status": "pending"})
    rendered = [p for event in events for p in dialect.render(None, event) if isinstance(p, dict)]
    assert rendered[-1]["status"] == "completed"
    assert rendered[-1]["execution_time"] == done["execution_time"]


def test_an_execution_missing_input_is_a_400_naming_the_reference(client, auth):
    headers = auth.headers(auth.token_for("alice"))
    workflow_id = create(client, headers).get_json()["workflow"]["id"]
    response = client.post("/api/v1/executions", json={"workflow_id": workflow_id, "input_data": {}}, headers=headers)
    assert response.status_code == 400
    assert "${input.n}" in response.get_json()["error"]["message"]


def test_a_non_numeric_workflow_id_is_a_400(client, auth):
    headers = auth.headers(auth.token_for("alice"))
    response = client.post("/api/v1/executions", json={"workflow_id": "abc"}, headers=headers)
    assert response.status_code == 400


def test_a_plain_job_is_not_an_execution(client, auth):
    headers = auth.headers(auth.token_for("alice"))
    job = client.post("/api/jobs", json={"kind": "simulate", "params": {"steps": 1}}, headers=headers).get_json()["job"]
    assert client.get(f"/api/v1/executions/{job['id']}", headers=headers).status_code == 404


def test_workflow_kind_cannot_be_submitted_directly(client, auth):
    headers = auth.headers(auth.token_for("alice"))
    response = client.post("/api/jobs", json={"kind": "workflow", "params": {"steps": [{}]}}, headers=headers)
    assert response.status_code == 400


def test_whole_references_keep_their_type_and_embedded_ones_become_text():
    results = [{"rows": 12, "file": {"name": "a.csv"}}]
    params = {
        "n": "${steps.0.result.rows}",
        "label": "rows=${steps.0.result.rows} in ${input.day}",
        "x": [1, "${input.day}"],
    }
    assert resolve(params, {"day": "mon"}, results) == {"n": 12, "label": "rows=12 in mon", "x": [1, "mon"]}
    assert resolve("${steps.0.result.file.name}", {}, results) == "a.csv"
    with pytest.raises(UnresolvedReference):
        resolve("${input.missing}", {}, results)


def test_references_must_point_to_earlier_steps():
    with pytest.raises(ValidationFailed):
        validate_steps([{"kind": "simulate", "params": {}}, {"kind": "simulate", "params": {"s": "${steps.1.result}"}}])


def test_execution_time_is_seconds_between_start_and_end():
    assert execution_time("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:02.500Z") == 2.5
    assert execution_time("2026-01-01T00:00:00.000Z", None) is None


def test_a_step_naming_an_unknown_test_case_is_refused_when_saved(client, auth):
    token = auth.token_for("alice")
    steps = [{"kind": "simulate", "params": {}}, {"kind": "api_test", "params": {"test_case_id": 77}}]
    body = {"name": "w", "steps": steps}
    response = client.post("/api/workflows", json=body, headers=auth.headers(token))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "unknown_reference" and error["details"] == {"path": "steps[1].params.test_case_id"}


def test_a_step_with_bad_literal_params_is_refused_when_saved(client, auth):
    token = auth.token_for("alice")
    body = {"name": "w", "steps": [{"kind": "simulate", "params": {"steps": "many"}}]}
    response = client.post("/api/workflows", json=body, headers=auth.headers(token))
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"path": "steps[0].params.steps"}
