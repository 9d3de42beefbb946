"""Seed 004: workflow executions over REST and ``/api/v1/ws/executions/<id>``, real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import wait_for

from .plain_ws import KindsServer, connect, recv_all_until_closed, recv_json, send_json, start_server

STATUS_KEYS = ["type", "execution_id", "status", "progress", "message", "result", "error", "execution_time"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    """One server for the module: every test logs in and makes its own workflows."""
    yield from start_server(tmp_path_factory.mktemp("ws004"))


def create_workflow(server: KindsServer, token: str, steps: list[dict[str, Any]]) -> int:
    response = server.api("POST", "/api/workflows", token, json={"name": "pipeline", "steps": steps})
    assert response.status_code == 201, response.text
    return int(response.json()["workflow"]["id"])


def execute(server: KindsServer, token: str, workflow_id: int, **input_data: Any) -> dict[str, Any]:
    response = server.api(
        "POST", "/api/v1/executions", token, json={"workflow_id": str(workflow_id), "input_data": input_data}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


THREE_STEPS = [
    {"kind": "simulate", "params": {"steps": "${input.rows}", "interval": 0.03, "log_every": 0}},
    {"kind": "simulate", "params": {"steps": "${steps.0.result.steps}", "interval": 0.02, "log_every": 0}},
    {"kind": "simulate", "params": {"steps": 4, "interval": 0.03, "log_every": 0}},
]


def test_three_step_workflow_completes_and_the_socket_ends_with_the_result_then_closes(server):
    token = server.login("alice")
    workflow_id = create_workflow(server, token, THREE_STEPS)
    execution = execute(server, token, workflow_id, rows=8)
    assert execution["status"] == "pending" and execution["workflow_id"] == workflow_id

    async def watch():
        async with await connect(server, f"/api/v1/ws/executions/{execution['id']}", token) as ws:
            messages = await recv_all_until_closed(ws)
            return messages, ws.close_code

    messages, close_code = asyncio.run(watch())
    statuses = [m for m in messages if m["type"] == "status"]
    assert messages[0]["type"] == "status"  # the current state comes first
    for status in statuses:
        assert list(status) == STATUS_KEYS and status["execution_id"] == execution["id"]
    progress = [s["progress"] for s in statuses]
    assert progress == sorted(progress) and all(0 <= p <= 100 for p in progress)
    assert len({p for p in progress}) >= 3  # it moved, step by step
    final = statuses[-1]
    assert final["status"] == "completed" and final["progress"] == 100 and final["error"] is None
    assert final["result"] == {"output": {"steps": 4}, "steps": [{"steps": 8}, {"steps": 8}, {"steps": 4}]}
    assert final["execution_time"] > 0
    assert messages[-1] == final and close_code == 1000
    nodes = [m for m in messages if m["type"] == "node_status"]
    assert [(n["step"], n["status"]) for n in nodes if n["status"] == "completed"] == [
        (0, "completed"),
        (1, "completed"),
        (2, "completed"),
    ]

    events = server.api("GET", f"/api/jobs/{execution['id']}/events", token).json()["events"]
    node_events = [(e["data"]["step"], e["data"]["status"]) for e in events if e["type"] == "node_status"]
    for step in range(3):
        assert [status for s, status in node_events if s == step] == ["pending", "running", "completed"]
    assert any(e["type"] == "job_log" for e in events)
    rest = server.api("GET", f"/api/v1/executions/{execution['id']}", token).json()
    assert rest["status"] == "completed" and rest["execution_time"] == final["execution_time"]
    children = server.api("GET", "/api/jobs?kind=simulate", token).json()["jobs"]
    assert sorted(c["parent_id"] for c in children if c["parent_id"] == execution["id"]) == [execution["id"]] * 3


def test_a_failing_step_fails_the_execution_with_that_steps_error(server):
    token = server.login("alice")
    steps = [
        {"kind": "simulate", "params": {"steps": 2, "interval": 0.01}},
        {"kind": "simulate", "params": {"steps": 5, "interval": 0.01, "fail_at": 3}},
        {"kind": "simulate", "params": {"steps": 2, "interval": 0.01}},
    ]
    execution = execute(server, token, create_workflow(server, token, steps))

    async def watch():
        async with await connect(server, f"/api/v1/ws/executions/{execution['id']}", token) as ws:
            return await recv_all_until_closed(ws), ws.close_code

    messages, close_code = asyncio.run(watch())
    final = messages[-1]
    assert final["status"] == "failed" and "simulated failure at step 3" in final["error"]
    assert final["result"] is None and close_code == 1000
    rest = server.api("GET", f"/api/v1/executions/{execution['id']}", token).json()
    assert rest["error_code"] == "simulated_failure"
    children = [j for j in server.api("GET", "/api/jobs?kind=simulate", token).json()["jobs"]]
    assert len([c for c in children if c["parent_id"] == execution["id"]]) == 2  # step 3 never started


def test_cancelling_the_execution_cancels_the_running_step(server):
    token = server.login("alice")
    steps = [{"kind": "simulate", "params": {"steps": 1000, "interval": 0.05}}]
    execution = execute(server, token, create_workflow(server, token, steps))

    def running_child() -> dict[str, Any] | None:
        jobs = server.api("GET", "/api/jobs?kind=simulate&status=running", token).json()["jobs"]
        return next((j for j in jobs if j["parent_id"] == execution["id"]), None)

    child = wait_for(running_child, timeout=20)
    assert server.api("POST", f"/api/jobs/{execution['id']}/cancel", token).status_code == 202
    wait_for(
        lambda: server.api("GET", f"/api/v1/executions/{execution['id']}", token).json()["status"] == "cancelled",
        timeout=20,
    )
    assert server.api("GET", f"/api/jobs/{child['id']}", token).json()["job"]["status"] == "cancelled"


def test_connecting_after_the_end_gets_the_final_state_then_close_1000(server):
    token = server.login("alice")
    steps = [{"kind": "simulate", "params": {"steps": 2, "interval": 0.01}}]
    execution = execute(server, token, create_workflow(server, token, steps))
    wait_for(
        lambda: server.api("GET", f"/api/v1/executions/{execution['id']}", token).json()["status"] == "completed",
        timeout=20,
    )

    async def watch():
        async with await connect(server, f"/api/v1/ws/executions/{execution['id']}", token) as ws:
            return await recv_all_until_closed(ws), ws.close_code

    messages, close_code = asyncio.run(watch())
    assert len(messages) == 1 and messages[0]["status"] == "completed" and messages[0]["progress"] == 100
    assert messages[0]["execution_time"] is not None and close_code == 1000


def test_ping_gets_pong_and_bad_input_gets_an_error_while_running(server):
    token = server.login("alice")
    steps = [{"kind": "simulate", "params": {"steps": 200, "interval": 0.05}}]
    execution = execute(server, token, create_workflow(server, token, steps))

    async def scenario():
        async with await connect(server, f"/api/v1/ws/executions/{execution['id']}", token) as ws:
            first = await recv_json(ws)
            await send_json(ws, {"type": "ping"})
            await ws.send("nonsense")
            replies = []
            while len(replies) < 2:
                message = await recv_json(ws)
                if message["type"] in {"pong", "error"}:
                    replies.append(message)
            return first, replies

    first, replies = asyncio.run(scenario())
    assert first["type"] == "status"
    assert replies[0] == {"type": "pong"}
    assert replies[1]["type"] == "error" and replies[1]["message"]
    server.api("POST", f"/api/jobs/{execution['id']}/cancel", token)


@pytest.mark.parametrize("whose", ["unknown", "another user's", "not a workflow", "not a number"])
def test_unknown_or_foreign_executions_get_an_error_then_close_1008(server, whose):
    alice = server.login("alice")
    execution_id: Any = 999_999
    if whose == "another user's":
        steps = [{"kind": "simulate", "params": {"steps": 2, "interval": 0.01}}]
        bob = server.login("bob")
        execution_id = execute(server, bob, create_workflow(server, bob, steps))["id"]
    elif whose == "not a workflow":
        execution_id = server.submit(alice, steps=2, interval=0.01)["id"]
    elif whose == "not a number":
        execution_id = "abc"

    async def scenario():
        async with await connect(server, f"/api/v1/ws/executions/{execution_id}", alice) as ws:
            return await recv_all_until_closed(ws), ws.close_code

    messages, close_code = asyncio.run(scenario())
    assert [m["type"] for m in messages] == ["error"] and messages[0]["message"]
    assert close_code == 1008
