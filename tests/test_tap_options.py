"""``twistd plantcdn`` options: parsed without opening a socket, plus two real-process checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from conftest import INBOX, RunningServer, clean_env
from twisted.application.service import IServiceCollection
from twisted.python import usage

from plantcdn.credentials import DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY
from plantcdn.tap import (
    DEFAULT_BACKLOG,
    Options,
    is_loopback_endpoint,
    makeService,
    with_default_backlog,
)

LOOPBACK = "tcp:0:interface=127.0.0.1"
CREDENTIALS = {
    "AWS_S3_ACCESS_KEY_ID": "AKIAPLANTCDNTESTKEY1",
    "AWS_S3_SECRET_ACCESS_KEY": "a-configured-secret-for-the-tap-tests",
}


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in an empty folder, so no ``.env`` of the checkout is read."""
    monkeypatch.chdir(tmp_path)


def parse(argv: list[str], environ: dict[str, str] | None = None) -> Options:
    options = Options(environ=environ if environ is not None else {})
    options.parseOptions(argv)
    return options


def test_listen_is_repeatable(tmp_path: Path) -> None:
    """Every --listen given is kept, in order."""
    second = "tcp6:0:interface=\\:\\:1"
    options = parse(["--listen", LOOPBACK, "--listen", second, "--data-dir", str(tmp_path)])
    assert options["listen"] == [LOOPBACK, second]


def test_default_listen_uses_port(tmp_path: Path) -> None:
    """With no --listen, plantcdn listens on loopback at $PORT (8001 by default)."""
    assert parse([])["listen"] == ["tcp:8001:interface=127.0.0.1"]
    assert parse([], {"PORT": "9123"})["listen"] == ["tcp:9123:interface=127.0.0.1"]


def test_data_dir(tmp_path: Path) -> None:
    """--data-dir names the folder of the buckets; the default is the current folder."""
    data = tmp_path / "data"
    data.mkdir()
    assert parse(["--data-dir", str(data)])["config"].data_dir == data.resolve()
    assert parse([])["config"].data_dir == tmp_path.resolve()


def test_environment_reaches_config(tmp_path: Path) -> None:
    """The environment is read once, into the Config the service is built from."""
    config = parse(
        [],
        {
            **CREDENTIALS,
            "AWS_ACCOUNT_ID": "111122223333",
            "AWS_S3_REGION_NAME": "eu-central-1",
            "S3_INBOX_BUCKET": "my-inbox",
            "BASE_URL": "http://cdn.example.test:8001",
        },
    )["config"]
    assert config.account_id == "111122223333"
    assert config.region == "eu-central-1"
    assert config.inbox_bucket == "my-inbox"
    assert config.base_host == "cdn.example.test"
    assert not config.using_dev_credentials
    assert "a-configured-secret" not in repr(config)


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    """``.env`` in the working folder is read; the real environment overrides it."""
    (tmp_path / ".env").write_text("AWS_S3_REGION_NAME=eu-west-1\nAWS_ACCOUNT_ID=111122223333\n")
    config = parse([], {"AWS_ACCOUNT_ID": "444455556666"})["config"]
    assert config.region == "eu-west-1"
    assert config.account_id == "444455556666"


@pytest.mark.parametrize(
    "argv",
    [
        ["--no-such-option"],
        ["--listen"],
        ["--data-dir"],
        ["unexpected-argument"],
    ],
)
def test_bad_option_is_usage_error(argv: list[str]) -> None:
    """An unknown option, a missing value or a stray argument: UsageError."""
    with pytest.raises(usage.UsageError):
        parse(argv)


@pytest.mark.parametrize(
    "description",
    ["nonsense:8001", "tcp:not-a-port:interface=127.0.0.1", "tcp", "tcp:8001:bogus=1"],
)
def test_bad_endpoint_is_usage_error(description: str) -> None:
    """A --listen that is not a Twisted endpoint string: UsageError naming it."""
    with pytest.raises(usage.UsageError, match="invalid --listen"):
        parse(["--listen", description])


def test_missing_data_dir_is_usage_error(tmp_path: Path) -> None:
    """A --data-dir that does not exist (or is a file): UsageError."""
    with pytest.raises(usage.UsageError, match="not a folder"):
        parse(["--data-dir", str(tmp_path / "missing")])
    (tmp_path / "file").write_text("")
    with pytest.raises(usage.UsageError, match="not a folder"):
        parse(["--data-dir", str(tmp_path / "file")])


@pytest.mark.parametrize(
    "environ",
    [
        {"PORT": "eighty"},
        {"PORT": "70000"},
        {"AWS_ACCOUNT_ID": "12345"},
        {"AWS_S3_ACCESS_KEY_ID": "only-the-id"},
        {"S3_INBOX_BUCKET": "Not_A_Bucket"},
        {"BASE_URL": "ftp://example.test"},
    ],
)
def test_bad_configuration_is_usage_error(environ: dict[str, str]) -> None:
    """A configuration plantcdn cannot start with is a UsageError, not a traceback."""
    with pytest.raises(usage.UsageError):
        parse([], environ)


@pytest.mark.parametrize(
    "description",
    ["tcp:8001", "tcp:8001:interface=0.0.0.0", "tcp6:8001", "tcp6:8001:interface=\\:\\:"],
)
def test_dev_key_pair_refuses_non_loopback(description: str) -> None:
    """The public development key pair never listens beyond loopback."""
    with pytest.raises(usage.UsageError, match="development key pair"):
        parse(["--listen", description])
    with pytest.raises(usage.UsageError, match="development key pair"):
        parse(["--listen", LOOPBACK, "--listen", description])


def test_dev_key_pair_named_explicitly_is_still_refused() -> None:
    """Configuring the documented dev pair by hand does not make it private."""
    environ = {
        "AWS_S3_ACCESS_KEY_ID": DEV_ACCESS_KEY_ID,
        "AWS_S3_SECRET_ACCESS_KEY": DEV_SECRET_ACCESS_KEY,
    }
    with pytest.raises(usage.UsageError, match="development key pair"):
        parse(["--listen", "tcp:8001"], environ)


@pytest.mark.parametrize("description", ["tcp:8001", "tcp:8001:interface=0.0.0.0"])
def test_configured_credentials_may_listen_anywhere(description: str) -> None:
    """With real credentials configured, a public interface is allowed."""
    for environ in (
        CREDENTIALS,
        {"AWS_ACCESS_KEY_ID": "AKIAFALLBACKNAME0001", "AWS_SECRET_ACCESS_KEY": "s3cr3t"},
    ):
        options = parse(["--listen", description], environ)
        assert options["listen"] == [description]
        assert not options["config"].using_dev_credentials


@pytest.mark.parametrize(
    ("description", "loopback"),
    [
        ("tcp:8001:interface=127.0.0.1", True),
        ("tcp:port=8001:interface=127.0.0.1", True),
        ("TCP:8001:interface=127.0.0.1", True),
        ("tcp:8001:interface=127.1.2.3", True),
        ("tcp:8001:interface=localhost", True),
        ("tcp6:8001:interface=\\:\\:1", True),
        ("tcp6:8001:interface=0\\:0\\:0\\:0\\:0\\:0\\:0\\:1", True),
        ("ssl:8443:interface=127.0.0.1:privateKey=key.pem", True),
        ("unix:/tmp/plantcdn.sock", True),
        ("unix:address=/tmp/plantcdn.sock:mode=600", True),
        ("tcp:8001", False),
        ("tcp:0", False),
        ("tcp:8001:interface=0.0.0.0", False),
        ("tcp:8001:interface=192.168.1.10", False),
        ("tcp6:8001", False),
        ("tcp6:8001:interface=\\:\\:", False),
        ("tcp:8001:interface=127.example.com", False),
        ("tcp:8001:interface=localhost.example.com", False),
        ("tcp:8001:interface=127.0.0.1.example.com", False),
        ("ssl:8443:privateKey=key.pem", False),
        ("systemd:domain=INET:index=0", False),
        ("nonsense", False),
    ],
)
def test_is_loopback_endpoint(description: str, loopback: bool) -> None:
    """Only an endpoint that can be reached from this machine alone counts as loopback."""
    assert is_loopback_endpoint(description) is loopback


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:8001", f"tcp:8001:backlog={DEFAULT_BACKLOG}"),
        ("tcp:8001:interface=127.0.0.1", f"tcp:8001:interface=127.0.0.1:backlog={DEFAULT_BACKLOG}"),
        ("tcp6:8001:interface=\\:\\:1", f"tcp6:8001:interface=\\:\\:1:backlog={DEFAULT_BACKLOG}"),
        ("unix:/tmp/p.sock", f"unix:/tmp/p.sock:backlog={DEFAULT_BACKLOG}"),
        ("tcp:8001:backlog=16", "tcp:8001:backlog=16"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ],
)
def test_listeners_get_a_deep_backlog_unless_one_is_given(description: str, expected: str) -> None:
    """Twisted's default backlog of 50 dropped connection bursts into 1 s SYN retries."""
    assert with_default_backlog(description) == expected


@pytest_twisted.ensureDeferred
async def test_the_listening_socket_has_the_default_backlog(tmp_path: Path) -> None:
    """What the service really listens with (the socket workers share, too)."""
    service: Any = makeService(parse(["--listen", LOOPBACK, "--data-dir", str(tmp_path)]))
    (listener,) = [s for s in service if getattr(s, "description", None) is not None]
    listener.privilegedStartService()
    try:
        assert listener.port is not None
        assert listener.port.backlog == DEFAULT_BACKLOG
    finally:
        await listener.port.stopListening()


def test_make_service_shape(tmp_path: Path) -> None:
    """makeService builds a MultiService with one listener per --listen, opening nothing."""
    options = parse(["--listen", LOOPBACK, "--listen", "tcp:0:interface=127.0.0.2"])
    service: Any = makeService(options)
    assert IServiceCollection.providedBy(service)
    listeners = [s for s in service if getattr(s, "description", None) is not None]
    assert [s.description for s in listeners] == [LOOPBACK, "tcp:0:interface=127.0.0.2"]
    assert not service.running
    assert all(s.port is None for s in listeners)


# ---------------------------------------------------------------------------
# The real process


def twistd(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    executable = str(Path(sys.executable).with_name("twistd"))
    return subprocess.run(
        [executable, "-n", "--pidfile=", "--logfile=-", "plantcdn", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--listen", "tcp:0"),
        ("--listen", "tcp:0:interface=0.0.0.0"),
        ("--listen", "tcp:0:interface=127.0.0.1", "--listen", "tcp:0"),
    ],
)
def test_daemon_refuses_public_listen_with_dev_pair(tmp_path: Path, args: tuple[str, ...]) -> None:
    """``twistd -n plantcdn --listen tcp:0`` with no credentials exits non-zero, clearly."""
    result = twistd(*args, env=clean_env(), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "development key pair" in output
    assert "AWS_S3_ACCESS_KEY_ID" in output
    assert "Traceback" not in output
    assert not (tmp_path / "s3_inbox").exists()


def test_daemon_bad_option_is_usage_message(tmp_path: Path) -> None:
    """A bad option or a bad data dir from the command line: a message, no traceback."""
    for args in (("--no-such-option",), ("--data-dir", str(tmp_path / "missing"))):
        result = twistd(*args, env=clean_env(), cwd=tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "Traceback" not in output, output


def test_secret_never_logged(server: RunningServer, tenant: str) -> None:
    """After successes and refusals, the log holds neither the secret nor a signature."""
    s3: Any = server.client()
    key = f"{tenant}/logged.txt"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x", Metadata={"a": "b"})
    s3.get_object(Bucket=INBOX, Key=key)["Body"].read()
    url = server.client(signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": INBOX, "Key": key}
    )
    signature = url.rsplit("X-Amz-Signature=", 1)[1]
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
    wrong: Any = server.client(secret_key="wrong-secret")
    with pytest.raises(Exception, match="SignatureDoesNotMatch"):
        wrong.put_object(Bucket=INBOX, Key=key, Body=b"y")
    with pytest.raises(Exception, match="InvalidAccessKeyId"):
        server.client(access_key="AKIAUNKNOWNKEY000000").get_object(Bucket=INBOX, Key=key)
    log = server.log_text
    assert server.secret_key not in log
    assert signature not in log
    assert "Credential=" not in log
    assert "Signature=" not in log
    assert "SignatureDoesNotMatch" in log


def test_secret_never_logged_with_configured_credentials(start_server: Any, tmp_path: Path) -> None:
    """A configured secret stays out of the log too, and the dev-pair warning is not given."""
    running: RunningServer = start_server(**CREDENTIALS)
    s3: Any = running.client()
    s3.put_object(Bucket=INBOX, Key="company_1/plant_1/k", Body=b"x")
    with pytest.raises(Exception, match="SignatureDoesNotMatch"):
        running.client(secret_key="nope").put_object(
            Bucket=INBOX, Key="company_1/plant_1/k", Body=b"y"
        )
    log = running.log_text
    assert CREDENTIALS["AWS_S3_SECRET_ACCESS_KEY"] not in log
    assert "development key pair" not in log
