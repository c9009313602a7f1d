"""Packaging and deployment files: Dockerfile, compose, systemd units, the security scan.

No Docker engine is needed: the compose file is validated by ``docker compose
config`` (or Debian's ``docker-compose config``), skipped when neither exists;
systemd units by ``systemd-analyze verify`` and socket activation by
``systemd-socket-activate``, each skipped when missing.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import clean_env

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile_installs_dependencies_before_the_code() -> None:
    """setup.py is copied and installed before plantcdn/ is copied (layer caching)."""
    steps = [f"{word} {rest}" for word, rest in instructions()]
    first_setup = next(i for i, s in enumerate(steps) if s.startswith("COPY setup.py"))
    deps = next(i for i, s in enumerate(steps) if "requirements.txt" in s and s.startswith("RUN"))
    code = next(i for i, s in enumerate(steps) if s.startswith("COPY plantcdn"))
    assert first_setup < deps < code


def test_dockerfile_runs_as_non_root_with_volumes_port_healthcheck_and_twistd() -> None:
    """Small base, non-root USER, both storage volumes, EXPOSE, HEALTHCHECK, twistd CMD."""
    steps = instructions()
    words = dict(steps)
    assert re.fullmatch(r"python:3\.\d+-slim", words["FROM"])
    assert words["USER"] not in ("root", "0")
    volumes = json.loads(words["VOLUME"])
    assert set(volumes) == {"/app/s3_inbox", "/app/s3_longterm"}
    assert words["EXPOSE"] == "8001"
    assert "/_plantcdn/health" in words["HEALTHCHECK"]
    cmd = json.loads(words["CMD"])
    assert cmd[:2] == ["twistd", "-n"] and "plantcdn" in cmd
    assert "tcp:8001:interface=0.0.0.0" in cmd
    user_index = [w for w, _ in steps].index("USER")
    assert [w for w, _ in steps].index("CMD") > user_index


def test_dockerfile_reads_the_runtime_dependencies_from_setup_py() -> None:
    """The Dockerfile's own extraction of RUNTIME from setup.py works on today's setup.py."""
    text = re.sub(r"\\\n", "", dockerfile())
    snippet = re.search(r'python -c "(.*?)"\s*> /tmp/requirements.txt', text, re.S)
    assert snippet is not None
    result = subprocess.run([sys.executable, "-c", snippet.group(1)], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    requirements = result.stdout.split()
    names = {re.split(r"[<>=!~\[]", r)[0].lower() for r in requirements}
    assert {"twisted", "klein", "prometheus-client"} <= names
    assert "pillow" not in names  # the archived worker's dependency stays out of the image


def test_dockerignore_keeps_secrets_state_and_objects_out() -> None:
    """.env, the virtualenv, stored objects and git never reach the build context."""
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".git", "s3_inbox", "s3_longterm"} <= ignored


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_validates(tmp_path: Path) -> None:
    """`docker compose config` (or docker-compose) accepts the file: service mock-cdn,
    env_file, port, both volumes, restart policy and a healthcheck."""
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    shutil.copy2(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy2(ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run([*command, "config"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env=clean_env({"PORT": "8123"}))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "mock-cdn:" in out
    assert "8123" in out and ":8001" in out
    assert "/app/s3_inbox" in out and "/app/s3_longterm" in out
    assert "restart: unless-stopped" in out
    assert "/_plantcdn/health" in out
    assert "S3_INBOX_BUCKET" in out  # env_file .env was read


def test_systemd_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the units (with the twistd path of this machine)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    names = ["plantcdn.socket", "plantcdn.service", "plantcdn-standalone.service"]
    for name in names:
        text = (ROOT / "deploy" / name).read_text()
        text = text.replace("/opt/plantcdn/.venv/bin/twistd", str(VENV_BIN / "twistd"))
        (tmp_path / name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", *[f"./{n}" for n in names]],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if "plantcdn" in line]
    assert complaints == []


def test_socket_activation_with_twisted_systemd_endpoint(tmp_path: Path) -> None:
    """With a socket handed over as systemd does, plantcdn answers on it (systemd: endpoint)."""
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = clean_env()
    process = subprocess.Popen(
        [activate, "-l", f"127.0.0.1:{port}", "--fdname=plantcdn",
         "-E", "AWS_S3_ACCESS_KEY_ID=AKIAPLANTCDNSYSTEMD1", "-E", "AWS_S3_SECRET_ACCESS_KEY=s3cr3t",
         "-E", "PLANTCDN_FSYNC=false", "-E", f"PATH={env['PATH']}",
         str(VENV_BIN / "twistd"), "-n", "--pidfile=", "--logfile=-", "plantcdn",
         "--listen", "systemd:domain=INET:index=0", "--data-dir", str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_plantcdn/health", timeout=20
                ) as response:
                    document = json.loads(response.read())
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        assert document["status"] == "ok"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_package_scans_clean_with_bandit() -> None:
    """bandit finds nothing of medium or high severity in plantcdn/ (scripts/bandit.yaml)."""
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-r", "plantcdn", "-c", "scripts/bandit.yaml", "-q",
         "--severity-level", "medium", "-f", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    report = json.loads(result.stdout)
    assert report["results"] == [], [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in report["results"]
    ]
    assert result.returncode == 0
