"""``starter.sh`` on the local (no Docker) path, with a real background plantcdn.

Each test copies ``starter.sh`` into its own temporary folder (which becomes
the data folder), uses the project's virtualenv and a free loopback port, and
forces ``PLANTCDN_MODE=local`` so an engine on the machine cannot change the
path under test.  Every process started is stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import clean_env

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Starter:
    """A copy of starter.sh in a folder of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.script = folder / "starter.sh"
        shutil.copy2(ROOT / "starter.sh", self.script)
        self.port = free_port()
        self.env = clean_env({
            "PORT": str(self.port),
            "PLANTCDN_MODE": "local",
            "PLANTCDN_VENV": str(VENV),
            "PLANTCDN_FSYNC": "false",
            "PLANTCDN_START_TIMEOUT": "30",
        })

    def run(self, *args: str, stdin: str | None = None, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.script), *args], cwd=self.folder, env={**self.env, **env},
            input=stdin if stdin is not None else "", capture_output=True, text=True,
            timeout=timeout,
        )

    def pid(self) -> int | None:
        pidfile = self.folder / "twistd.pid"
        return int(pidfile.read_text().strip()) if pidfile.exists() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.fixture
def starter(tmp_path: Path) -> Iterator[Starter]:
    s = Starter(tmp_path)
    yield s
    pid = s.pid()
    if pid is not None and alive(pid):  # a failed test must not leave a daemon behind
        os.kill(pid, signal.SIGKILL)


def test_help_lists_every_command(starter: Starter) -> None:
    """--help exits 0 and names every subcommand."""
    result = starter.run("--help")
    assert result.returncode == 0
    for command in ("start", "stop", "restart", "status", "logs", "test", "scan", "clean"):
        assert f"  {command}" in result.stdout


def test_unknown_command_and_option_fail_clearly(starter: Starter) -> None:
    """An unknown command or option exits 2 with a message."""
    result = starter.run("launch")
    assert result.returncode == 2
    assert "unknown command launch" in result.stderr
    result = starter.run("start", "--fast")
    assert result.returncode == 2
    assert "unknown option '--fast'" in result.stderr
    assert starter.run().returncode == 2


def test_start_status_logs_stop_with_a_real_process(starter: Starter) -> None:
    """start runs plantcdn in the background, status sees it healthy, stop ends it."""
    assert starter.run("status").returncode == 3

    started = starter.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "no Docker engine in use" in started.stdout
    assert f"http://127.0.0.1:{starter.port}" in started.stdout
    pid = starter.pid()
    assert pid is not None and alive(pid)
    assert (starter.folder / "s3_inbox").is_dir()

    again = starter.run("start")
    assert again.returncode == 0 and f"already running locally (pid {pid})" in again.stdout

    status = starter.run("status")
    assert status.returncode == 0, status.stdout
    assert f"running locally: pid {pid}" in status.stdout
    assert '"status": "ok"' in status.stdout

    logs = starter.run("logs")
    assert logs.returncode == 0
    assert "plantcdn listening on" in logs.stdout

    refused = starter.run("clean", "--yes")
    assert refused.returncode != 0 and "stop first" in refused.stderr

    stopped = starter.run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(pid)
    assert not (starter.folder / "twistd.pid").exists()
    assert starter.run("status").returncode == 3
    assert "not running" in starter.run("stop").stdout


def test_restart_replaces_the_process(starter: Starter) -> None:
    """restart stops the running plantcdn and starts a new one."""
    assert starter.run("start").returncode == 0
    first = starter.pid()
    restarted = starter.run("restart")
    assert restarted.returncode == 0, restarted.stderr
    second = starter.pid()
    assert first is not None and second is not None and first != second
    assert not alive(first) and alive(second)
    assert starter.run("stop").returncode == 0


def test_status_reports_an_unhealthy_server(starter: Starter) -> None:
    """A live plantcdn whose storage cannot be written: status exits 1, "NOT healthy"."""
    assert starter.run("start").returncode == 0
    try:
        tmp_dir = starter.folder / "s3_inbox" / ".plantcdn" / "tmp"
        shutil.rmtree(tmp_dir)
        tmp_dir.write_bytes(b"")
        status = starter.run("status")
        assert status.returncode == 1
        assert "NOT healthy" in status.stdout
    finally:
        tmp_dir.unlink()
        tmp_dir.mkdir()
        starter.run("stop")


def test_start_fails_clearly_when_the_port_is_taken(starter: Starter) -> None:
    """If plantcdn cannot start, start exits non-zero and shows the end of the log."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", starter.port))
        busy.listen()
        result = starter.run("start", PLANTCDN_START_TIMEOUT="10")
    assert result.returncode == 1
    assert "did not become healthy" in result.stderr


def test_logs_without_a_log_file_fails(starter: Starter) -> None:
    """logs before any start says there is no log yet."""
    result = starter.run("logs")
    assert result.returncode == 1
    assert "no log file yet" in result.stderr


def test_clean_empties_only_the_storage_folders(starter: Starter, tmp_path: Path) -> None:
    """clean --yes removes objects and metadata, keeps .gitkeep, touches nothing else."""
    folder = starter.folder
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    for bucket in ("s3_inbox", "s3_longterm"):
        (folder / bucket / "company_1" / "plant_1").mkdir(parents=True)
        (folder / bucket / "company_1" / "plant_1" / "a.jpg").write_bytes(b"x")
        (folder / bucket / ".plantcdn" / "meta").mkdir(parents=True)
        (folder / bucket / ".gitkeep").write_text("")
    (folder / "s3_inbox" / "link-out").symlink_to(outside, target_is_directory=True)
    (folder / "notes.txt").write_text("mine")

    result = starter.run("clean", "--yes")
    assert result.returncode == 0, result.stderr
    for bucket in ("s3_inbox", "s3_longterm"):
        assert sorted(p.name for p in (folder / bucket).iterdir()) == [".gitkeep"]
    assert (outside / "precious.txt").read_text() == "keep me"
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "starter.sh").exists()
    shutil.rmtree(outside)


def test_clean_asks_first(starter: Starter) -> None:
    """Without --yes and without a terminal, clean refuses and deletes nothing."""
    target = starter.folder / "s3_inbox" / "company_1" / "plant_1" / "a.jpg"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    result = starter.run("clean", stdin="y\n")
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert target.exists()


def test_clean_refuses_a_symlinked_storage_folder(starter: Starter, tmp_path: Path) -> None:
    """A storage folder that is a symlink is not followed."""
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data").write_text("x")
    (starter.folder / "s3_inbox").symlink_to(elsewhere, target_is_directory=True)
    result = starter.run("clean", "--yes")
    assert result.returncode == 1
    assert "symlink" in result.stderr
    assert (elsewhere / "data").exists()
    shutil.rmtree(elsewhere)


def test_test_command_runs_the_readme_test_script(starter: Starter) -> None:
    """test hands its arguments to scripts/test.sh, the README's test command."""
    scripts = starter.folder / "scripts"
    scripts.mkdir()
    (scripts / "test.sh").write_text('echo "test.sh called with: $*"\nexit 7\n')
    result = starter.run("test", "-k", "something")
    assert result.returncode == 7
    assert "test.sh called with: -k something" in result.stdout


def test_scan_reports_findings_and_an_unreachable_audit(starter: Starter) -> None:
    """scan fails on a bandit finding and never reports an unaudited dependency set as clean."""
    scripts = starter.folder / "scripts"
    scripts.mkdir()
    shutil.copy2(ROOT / "scripts" / "scan.sh", scripts / "scan.sh")
    shutil.copy2(ROOT / "scripts" / "bandit.yaml", scripts / "bandit.yaml")
    package = starter.folder / "plantcdn"
    package.mkdir()
    (package / "bad.py").write_text(
        "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n"
    )
    result = starter.run("scan", timeout=240)
    output = result.stdout + result.stderr
    assert "bandit: FINDINGS" in output
    assert "B602" in output
    assert result.returncode == 1
    assert "pip-audit:" in output
    if "0 audited" in output or "NOT DONE" in output:
        assert "NOT DONE" in output and "scan: " in output  # said plainly, not a pass
