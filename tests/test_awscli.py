"""The AWS CLI (``awscli`` from PyPI) end to end against the real daemon.

``aws s3 cp`` switches to multipart uploads and ranged downloads above 8 MB,
``aws s3 sync`` lists and compares before it copies: the same commands an
operator runs against AWS must work unchanged with ``--endpoint-url``.
Skipped when the ``aws`` command is not installed next to this Python.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import INBOX, LONGTERM, REGION, RunningServer, clean_env

MiB = 1024 * 1024


def _aws_command() -> str | None:
    beside = Path(sys.executable).with_name("aws")
    return str(beside) if beside.exists() else shutil.which("aws")


AWS = _aws_command()
pytestmark = pytest.mark.skipif(AWS is None, reason="awscli is not installed (pip install awscli)")


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty HOME with empty AWS config files, so no operator settings leak in.

    (Empty files rather than /dev/null: the CLI parses the config file, and a
    device file that is not a file makes it fail on some machines.)
    """
    home = tmp_path_factory.mktemp("aws-home")
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    return home


def aws(
    server: RunningServer, home: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``aws <args> --endpoint-url <server>`` with only the test's credentials."""
    assert AWS is not None
    env = clean_env(
        {
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
            "AWS_PAGER": "",
        }
    )
    result = subprocess.run(
        [AWS, *args, "--endpoint-url", server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"aws {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def body_of(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest() * 4096
    return (block * (size // len(block) + 1))[:size]


def test_cp_up_and_down_20mb_is_multipart(
    server: RunningServer, cli_home: Path, tenant: str, tmp_path: Path
) -> None:
    """``aws s3 cp`` of 20 MB uploads in parts and downloads the same bytes."""
    body = body_of(20 * 1000 * 1000, "cli")
    source = tmp_path / "scan.tif"
    source.write_bytes(body)
    url = f"s3://{INBOX}/{tenant}/scans/scan.tif"
    aws(server, cli_home, "s3", "cp", str(source), url, "--no-progress")
    assert (server.bucket_dir(INBOX) / f"{tenant}/scans/scan.tif").read_bytes() == body

    key = f"{tenant}/scans/scan.tif"
    head_args = ("s3api", "head-object", "--bucket", INBOX, "--key", key)
    head: Any = json.loads(aws(server, cli_home, *head_args).stdout)
    assert head["ContentLength"] == len(body)
    assert head["ETag"].endswith('-3"'), head["ETag"]

    back = tmp_path / "back.tif"
    aws(server, cli_home, "s3", "cp", url, str(back), "--no-progress")
    assert back.read_bytes() == body


def test_ls_and_rm(server: RunningServer, cli_home: Path, tenant: str, tmp_path: Path) -> None:
    """``aws s3 ls`` shows an object with its size; ``aws s3 rm`` removes it."""
    source = tmp_path / "leaf.txt"
    source.write_bytes(b"a leaf")
    url = f"s3://{LONGTERM}/{tenant}/leaf.txt"
    aws(server, cli_home, "s3", "cp", str(source), url, "--no-progress")
    listing = aws(server, cli_home, "s3", "ls", f"s3://{LONGTERM}/{tenant}/").stdout
    assert listing.split()[-2:] == ["6", "leaf.txt"], listing
    aws(server, cli_home, "s3", "rm", url)
    assert not (server.bucket_dir(LONGTERM) / f"{tenant}/leaf.txt").exists()
    assert aws(server, cli_home, "s3", "ls", f"s3://{LONGTERM}/{tenant}/", check=False).stdout == ""


def test_sync_small_tree(
    server: RunningServer, cli_home: Path, tenant: str, tmp_path: Path
) -> None:
    """``aws s3 sync`` uploads a tree, a second sync copies nothing, sync down restores it."""
    tree = tmp_path / "tree"
    files = {
        "index.html": b"<h1>plants</h1>",
        "img/a.webp": body_of(10_000, "a"),
        "img/deep/b.webp": body_of(20_000, "b"),
    }
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    prefix = f"s3://{INBOX}/{tenant}/site"
    first = aws(server, cli_home, "s3", "sync", str(tree), prefix, "--no-progress").stdout
    assert first.count("upload:") == len(files), first
    for name, data in files.items():
        assert (server.bucket_dir(INBOX) / f"{tenant}/site/{name}").read_bytes() == data
    again = aws(server, cli_home, "s3", "sync", str(tree), prefix, "--no-progress").stdout
    assert "upload:" not in again, again

    restored = tmp_path / "restored"
    aws(server, cli_home, "s3", "sync", prefix, str(restored), "--no-progress")
    for name, data in files.items():
        assert (restored / name).read_bytes() == data
