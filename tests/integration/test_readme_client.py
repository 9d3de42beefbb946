"""What README.md tells a programmer works exactly as written: the program snippet (with
only the server's address and login swapped) and ``flask --app wsgi watch``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import PASSWORD, ROOT

README = (ROOT / "README.md").read_text()
#: Variables that would make a client command look like a configured server.
SERVER_SETTINGS = ("HERALD_ENV", "JWT_SECRET_KEY", "SECRET_KEY", "DATABASE_URL")


def program_snippet() -> str:
    """The first Python block of README's "Using it from a program" section."""
    section = README.split("## Using it from a program", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README has no Python snippet under 'Using it from a program'"
    return match.group(1)


def swapped(code: str, old: str, new: str) -> str:
    assert code.count(old) == 1, f"{old!r} is not in the snippet exactly once"
    return code.replace(old, new)


def client_env() -> dict[str, str]:
    """This environment without anything of a Herald server's configuration."""
    return {key: value for key, value in os.environ.items() if key not in SERVER_SETTINGS}


def test_the_readme_program_prints_the_jobs_events_and_exits_when_it_ends(server):
    code = swapped(program_snippet(), '"http://127.0.0.1:5000"', repr(server.url))
    code = swapped(
        code, '{"username": "demo", "password": "demo-password"}', repr({"username": "alice", "password": PASSWORD})
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=client_env(), capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert any(line.startswith("job_status ") and "'completed'" in line for line in lines), run.stdout[-2000:]
    assert any(line.startswith("job_log ") for line in lines), run.stdout[-2000:]


def test_watch_follows_a_job_without_any_server_configuration(server, tmp_path: Path):
    token = server.login("alice")
    job = server.submit(token, steps=30, interval=0.2)  # still running when watch has started
    flask = str(Path(sys.executable).parent / "flask")
    run = subprocess.run(
        [flask, "--app", "wsgi", "watch", str(job["id"]), "--server", server.url],
        cwd=ROOT,
        env={**client_env(), "HERALD_USERNAME": "alice", "HERALD_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert f"job {job['id']} completed" in run.stdout, run.stdout[-2000:]
    assert "JWT_SECRET_KEY" not in run.stderr and "Traceback" not in run.stderr
    assert "%/s" not in run.stderr
    assert re.search(r"\| +\d+%, \d+/30 · [\d.,]+/s", run.stderr), run.stderr[-2000:]  # the job's rate
    assert "| 100%" in run.stderr
    assert "status: completed" in run.stdout, run.stdout[-2000:]
    assert "Eventlet is deprecated" not in run.stderr  # a client has no use for eventlet
