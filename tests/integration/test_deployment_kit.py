"""The deployment kit: docker-compose.yml and deploy/nginx.conf, checked without Docker.

No Docker engine runs here, so the compose file is parsed and cross-checked (services,
ports, environment against ``app.config``), Debian's nginx tests the real config, and the
same config proxies two real gunicorn web processes for Socket.IO and plain WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import websockets
import yaml

from tests.helpers import wait_for

from .clients import Recorder
from .cluster import Cluster
from .conftest import ROOT, ServerProcess, free_port

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
NGINX_CONF = (ROOT / "deploy" / "nginx.conf").read_text()
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HERALD_SERVICES = ("web1", "web2", "worker")


def upstream_servers(conf: str) -> list[str]:
    block = re.search(r"upstream herald \{(.*?)\}", conf, re.S)
    assert block, "nginx.conf has no upstream herald"
    return re.findall(r"^\s*server\s+([\w.:-]+);", block.group(1), re.M)


def test_compose_has_two_web_processes_a_worker_nginx_redis_and_postgres():
    assert set(COMPOSE["services"]) == {"web1", "web2", "worker", "nginx", "redis", "postgres"}
    worker = COMPOSE["services"]["worker"]
    assert worker["command"][:4] == ["celery", "-A", "app.worker", "worker"]
    assert "db upgrade" in (ROOT / "Dockerfile").read_text(), "each web container migrates on start"


def test_herald_services_share_engines_secrets_and_files():
    envs = {name: COMPOSE["services"][name]["environment"] for name in HERALD_SERVICES}
    for key in ("DATABASE_URL", "MESSAGE_QUEUE_URL", "CELERY_BROKER_URL", "JWT_SECRET_KEY", "JOB_EXECUTOR"):
        assert len({env[key] for env in envs.values()}) == 1, f"{key} differs between services"
    env = envs["worker"]
    assert env["JOB_EXECUTOR"] == "celery" and env["HERALD_ENV"] == "production"
    database = urlsplit(env["DATABASE_URL"].replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", "pw"))
    assert (database.scheme, database.hostname, database.port) == ("postgresql", "postgres", 5432)
    assert database.path == "/" + COMPOSE["services"]["postgres"]["environment"]["POSTGRES_DB"]
    for key in ("MESSAGE_QUEUE_URL", "CELERY_BROKER_URL"):
        assert urlsplit(env[key]).hostname == "redis"
    assert env["MESSAGE_QUEUE_URL"] != env["CELERY_BROKER_URL"], "broker and pub/sub use separate databases"
    for name in HERALD_SERVICES:
        assert "herald-files:/data" in COMPOSE["services"][name]["volumes"], f"{name} must see uploads"
        assert env["UPLOAD_DIR"].startswith("/data/")


def environment_variables_read() -> set[str]:
    """Every variable ``app/config.py`` (the only module that reads the environment) reads."""
    source = (ROOT / "app" / "config.py").read_text()
    return set(re.findall(r'(?:os\.environ\.get|_int|_float|_bool|_list)\(\s*"([A-Z][A-Z0-9_]*)"', source))


def test_every_herald_setting_in_compose_is_one_herald_reads():
    known = environment_variables_read()
    assert {"DATABASE_URL", "JWT_SECRET_KEY", "HERALD_ENV", "JOB_EXECUTOR"} <= known
    for name in HERALD_SERVICES:
        unknown = set(COMPOSE["services"][name]["environment"]) - known
        assert not unknown, f"{name} sets {unknown}, which Herald does not read"


def test_nginx_proxies_to_each_web_service_on_its_port():
    servers = upstream_servers(NGINX_CONF)
    expected = [f"{name}:{COMPOSE['services'][name]['environment']['PORT']}" for name in ("web1", "web2")]
    assert servers == expected
    nginx = COMPOSE["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert set(nginx["depends_on"]) == {"web1", "web2"}
    for header in ("Upgrade $http_upgrade", "Connection $connection_upgrade"):
        assert f"proxy_set_header {header};" in NGINX_CONF
    assert COMPOSE["services"]["web1"]["environment"]["TRUSTED_PROXIES"] == "1"


def local_nginx_conf(tmp_path: Path, backends: list[str], port: int) -> Path:
    """The real config with the upstream servers (and nothing else) pointed at local ports."""
    conf = NGINX_CONF
    for name, backend in zip(upstream_servers(NGINX_CONF), backends, strict=True):
        conf = conf.replace(f"server {name};", f"server {backend};")
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("events {", f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\nevents {{")
    conf = conf.replace("http {", f"http {{\n    access_log {tmp_path / 'access.log'};\n", 1)
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    return path


def require_nginx() -> None:
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed (scripts/test.sh installs Debian's nginx)")


def test_debian_nginx_accepts_the_config(tmp_path: Path):
    require_nginx()
    conf = local_nginx_conf(tmp_path, ["127.0.0.1:5001", "127.0.0.1:5002"], free_port())
    result = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def proxied(tmp_path: Path, postgres_database: str) -> Iterator[tuple[str, list[ServerProcess]]]:
    require_nginx()
    cluster = Cluster(tmp_path, postgres_database, TRUSTED_PROXIES="1")
    nginx = None
    try:
        webs = [cluster.web(), cluster.web()]
        port = free_port()
        conf = local_nginx_conf(tmp_path, [f"127.0.0.1:{web.port}" for web in webs], port)
        nginx = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"], stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), timeout=20)
        yield url, webs
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        cluster.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.eventlet_only
@pytest.mark.scale_out
def test_socketio_and_plain_websocket_work_through_nginx_to_both_processes(proxied):
    url, webs = proxied

    class ThroughProxy:
        def __init__(self, base: str) -> None:
            self.url = base

    token = webs[0].login("alice")
    job = webs[0].submit(token, steps=10, interval=0.05, log_every=1)
    recorders = [Recorder(ThroughProxy(url), token) for _ in range(4)]  # round robin: both processes
    for recorder in recorders:
        assert recorder.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)["ok"]

    async def plain() -> list[dict]:
        frames = []
        async with websockets.connect(url.replace("http", "ws") + f"/ws?token={token}", open_timeout=20) as ws:
            await ws.send(json.dumps({"type": "subscribe", "job_id": job["id"], "last_seq": 0}))
            while not any(f.get("data", {}).get("status") == "completed" for f in frames):
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        return frames

    frames = asyncio.run(plain())
    try:
        for recorder in recorders:
            wait_for(lambda r=recorder: r.job_finished(job["id"]), timeout=30)
    finally:
        for recorder in recorders:
            recorder.close()
    stored = webs[1].api("GET", f"/api/jobs/{job['id']}/events", token).json()["events"]
    for recorder in recorders:
        assert [m for m in recorder.of_job(job["id"]) if m.get("seq") is not None] == stored
    assert [f for f in frames if f.get("job_id") == job["id"] and f.get("seq") is not None] == stored
