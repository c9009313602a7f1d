"""Scoped credentials, pure: the file format, the policy, the operation table, reloading."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from plantcdn.config import Config, ConfigError
from plantcdn.credentials import DEV_ACCESS_KEY_ID, Credential
from plantcdn.errors import S3Error
from plantcdn.routing import Target, operation_for
from plantcdn.scopes import (
    ADMIN,
    ANY,
    OPERATION_CATEGORIES,
    CredentialStore,
    Scope,
    ScopesError,
    authorize,
    load_scoped_credentials,
    read_scoped_credentials,
    reload_on_sighup,
    request_subject,
)
from plantcdn.verification import Verifier

SECRET = "scoped-secret-never-shown-0123456789"
MAIN = Credential("MAINKEYID00000000000", "main-secret-never-shown-0123456789")


def entry(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "access_key_id": "PLANT7KEY",
        "secret_access_key": SECRET,
        "prefixes": ["company_7/plant_3/"],
        "operations": ["read", "write"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def load(*entries: Any) -> Any:
    return load_scoped_credentials(json.dumps(list(entries)), reserved=[MAIN.access_key_id])


def scope(*ops: str, prefixes: tuple[str, ...] = ("company_7/",), buckets: Any = None) -> Scope:
    return Scope(prefixes=prefixes, operations=frozenset(ops), buckets=buckets)


def denied(*args: Any) -> None:
    with pytest.raises(S3Error) as info:
        authorize(*args)
    assert (info.value.status, info.value.code) == (403, "AccessDenied")


# ---------------------------------------------------------------------------
# Loading


def test_a_valid_file_loads_every_field() -> None:
    (scoped,) = load(entry(operations=["read", "list"], buckets=["plantdb-longterm"]))
    assert scoped.access_key_id == "PLANT7KEY"
    assert scoped.credential.secret_access_key == SECRET
    assert scoped.scope == Scope(
        ("company_7/plant_3/",), frozenset({"read", "list"}), frozenset({"plantdb-longterm"})
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "not valid JSON"),
        ('{"access_key_id": "X"}', "expected a JSON list"),
        ("[1]", "entry 0: expected an object"),
        (json.dumps([entry(access_key_id="a/b")]), "access_key_id must be"),
        (json.dumps([entry(access_key_id="a:b")]), "access_key_id must be"),
        (json.dumps([entry(secret_access_key="short")]), "secret_access_key must be"),
        (json.dumps([entry(secret_access_key=None)]), "missing field(s) secret_access_key"),
        (json.dumps([entry(prefix=["company_7/"])]), "unknown field(s) prefix"),
        (json.dumps([entry(prefixes=[])]), "prefixes must be a non-empty list"),
        (json.dumps([entry(prefixes="company_7/")]), "prefixes must be a non-empty list"),
        (json.dumps([entry(prefixes=["company_7"])]), "must end with '/'"),
        (json.dumps([entry(prefixes=["/company_7/"])]), "no leading '/'"),
        (json.dumps([entry(prefixes=["company_7/../"])]), "'..' folder"),
        (json.dumps([entry(prefixes=["company_7//"])]), "no empty"),
        (json.dumps([entry(prefixes=["company_7\\x/"])]), "backslash"),
        (json.dumps([entry(operations=["read", "admin"])]), "unknown operation(s) 'admin'"),
        (json.dumps([entry(operations=[])]), "operations must be a non-empty list"),
        (json.dumps([entry(buckets=["Not_A_Bucket"])]), "not a valid S3 bucket name"),
        (json.dumps([entry(access_key_id=MAIN.access_key_id)]), "already in use"),
        (json.dumps([entry(), entry()]), "entry 1: access_key_id 'PLANT7KEY' is already in use"),
        (json.dumps([entry(access_key_id=DEV_ACCESS_KEY_ID)]), "development access key"),
    ],
)
def test_a_bad_file_is_refused_with_a_clear_message_and_no_secret(
    document: str, message: str
) -> None:
    with pytest.raises(ScopesError) as info:
        load_scoped_credentials(document, reserved=[MAIN.access_key_id])
    assert message in str(info.value)
    assert SECRET not in str(info.value)


def test_a_rejected_secret_is_not_quoted() -> None:
    bad = "has a space but is long enough"
    with pytest.raises(ScopesError) as info:
        load(entry(secret_access_key=bad))
    assert bad not in str(info.value)


def test_repr_of_loaded_credentials_and_config_hide_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(json.dumps([entry()]))
    config = Config.from_environ({"PLANTCDN_CREDENTIALS_FILE": str(path)}, data_dir=tmp_path)
    assert config.credentials_file == path.resolve()
    assert [s.access_key_id for s in config.scoped_credentials] == ["PLANT7KEY"]
    assert SECRET not in repr(config)
    assert SECRET not in repr(config.scoped_credentials)


def test_config_refuses_to_start_with_a_bad_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PLANTCDN_CREDENTIALS_FILE: .*cannot read"):
        Config.from_environ({"PLANTCDN_CREDENTIALS_FILE": str(tmp_path / "nope.json")})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([entry(operations=["everything"])]))
    with pytest.raises(ConfigError, match="unknown operation"):
        Config.from_environ({"PLANTCDN_CREDENTIALS_FILE": str(bad)})


def test_an_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (1024 * 1024 + 1))
    with pytest.raises(ScopesError, match="larger than"):
        read_scoped_credentials(path)


# ---------------------------------------------------------------------------
# The policy


def test_main_key_pair_may_do_anything() -> None:
    authorize(None, ADMIN, "plantdb-inbox", None)
    authorize(None, None, None, None)


@pytest.mark.parametrize(
    ("category", "key"),
    [
        ("read", "company_7/plant_3/a.jpg"),
        ("write", "company_7/x"),
        ("list", "company_7/"),
        ("list", "company_7/plant_3/"),
    ],
)
def test_inside_the_prefix_with_a_granted_category_is_allowed(category: str, key: str) -> None:
    authorize(scope("read", "write", "list"), category, "plantdb-inbox", key)


@pytest.mark.parametrize(
    ("category", "key"),
    [
        ("read", "company_8/plant_3/a.jpg"),  # another tenant
        ("read", "company_70/plant_3/a.jpg"),  # a neighbour sharing the text prefix
        ("read", "company_7"),  # the folder's name without its slash
        ("delete", "company_7/plant_3/a.jpg"),  # category not granted
        ("list", ""),  # a listing of the whole bucket
        ("list", "company_"),  # a listing wider than the scope
        ("read", "company_7/../company_8/a.jpg"),  # an escape attempt
        ("read", "company_7/./a.jpg"),
        ("read", "company_7/a\\..\\b"),
        ("read", None),  # no subject for a category that needs one
        (ADMIN, "company_7/a"),
        (None, "company_7/a"),  # an operation missing from the table
    ],
)
def test_outside_the_scope_is_access_denied(category: str | None, key: str | None) -> None:
    denied(scope("read", "write", "list"), category, "plantdb-inbox", key)


def test_bucket_restriction_applies_to_every_category() -> None:
    only_longterm = scope("read", buckets=frozenset({"plantdb-longterm"}))
    authorize(only_longterm, "read", "plantdb-longterm", "company_7/a")
    denied(only_longterm, "read", "plantdb-inbox", "company_7/a")
    authorize(only_longterm, ANY, "plantdb-longterm", None)
    denied(only_longterm, ANY, "plantdb-inbox", None)
    authorize(only_longterm, ANY, None, None)  # ListBuckets


def test_delete_objects_passes_the_bucket_check_and_leaves_keys_to_the_handler() -> None:
    authorize(scope("delete"), "delete", "plantdb-inbox", None)
    denied(scope("read"), "delete", "plantdb-inbox", None)


def test_listing_subject_is_the_prefix_and_delete_objects_has_none() -> None:
    assert request_subject("ListObjectsV2", None, {"prefix": "company_7/"}) == "company_7/"
    assert request_subject("ListObjects", None, {}) == ""
    assert request_subject("ListMultipartUploads", None, {"prefix": "c/"}) == "c/"
    assert request_subject("GetObject", "company_7/a", {"prefix": "x"}) == "company_7/a"
    assert request_subject("DeleteObjects", None, {}) is None


def _routed_operations() -> set[str]:
    """Every operation name the router can produce for a sample of requests."""
    names: set[str] = set()
    bucket, obj, service = (
        Target("b", None, False), Target("b", "k", False), Target(None, None, False)
    )
    queries: list[set[str]] = [
        set(), {"cors"}, {"location"}, {"uploads"}, {"delete"}, {"versioning"}, {"acl"},
        {"tagging"}, {"list-type"}, {"uploadId", "partNumber"}, {"uploadId"},
    ]
    for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
        for target in (bucket, obj, service):
            for query in queries:
                for headers in ({}, {"x-amz-copy-source": "b/k"}):
                    try:
                        names.add(operation_for(method, target, query, headers))
                    except S3Error:
                        pass
    return names


def test_every_routed_operation_has_a_category() -> None:
    """A new operation added to the router must be classified, or scoped keys lose it."""
    missing = _routed_operations() - set(OPERATION_CATEGORIES) - {"Preflight", "NotImplemented"}
    assert missing == set()


@pytest.mark.parametrize(
    ("operation", "category"),
    [
        ("GetObject", "read"), ("HeadObject", "read"), ("GetObjectTagging", "read"),
        ("PutObject", "write"), ("PostObject", "write"), ("CopyObject", "write"),
        ("CreateMultipartUpload", "write"), ("UploadPart", "write"),
        ("CompleteMultipartUpload", "write"), ("AbortMultipartUpload", "write"),
        ("DeleteObject", "delete"), ("DeleteObjects", "delete"),
        ("ListObjects", "list"), ("ListObjectsV2", "list"), ("ListMultipartUploads", "list"),
        ("ListParts", "list"), ("ListBuckets", ANY), ("CopySource", "read"),
        ("PutBucketCors", ADMIN),
    ],
)  # fmt: skip
def test_operation_table(operation: str, category: str) -> None:
    assert OPERATION_CATEGORIES[operation] == category


# ---------------------------------------------------------------------------
# The verifier facade and reloading


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_lines() -> Any:
    lines: list[str] = []

    def observer(event: LogEvent) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def write(path: Path, *entries: Any) -> None:
    """Replace the file (as an editor saving it would), with a new mtime each time."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(list(entries)))
    os.replace(tmp, path)


def make_verifier(tmp_path: Path, clock: FakeClock) -> tuple[Verifier, Path]:
    path = tmp_path / "creds.json"
    write(path, entry())
    config = Config.from_environ(
        {
            "AWS_S3_ACCESS_KEY_ID": MAIN.access_key_id,
            "AWS_S3_SECRET_ACCESS_KEY": MAIN.secret_access_key,
            "PLANTCDN_CREDENTIALS_FILE": str(path),
        },
        data_dir=tmp_path,
    )
    return Verifier(config, clock=clock), path


def test_verifier_merges_main_and_scoped_keys_and_authorizes(tmp_path: Path) -> None:
    verifier, _ = make_verifier(tmp_path, FakeClock())
    assert set(verifier.credentials) == {MAIN.access_key_id, "PLANT7KEY"}
    verifier.authorize(MAIN.access_key_id, "PutBucketCors", "plantdb-inbox", None)
    verifier.authorize("PLANT7KEY", "PutObject", "plantdb-inbox", "company_7/plant_3/a")
    with pytest.raises(S3Error, match="AccessDenied"):
        verifier.authorize("PLANT7KEY", "DeleteObject", "plantdb-inbox", "company_7/plant_3/a")
    with pytest.raises(S3Error, match="AccessDenied"):
        verifier.authorize("GONEKEY", "GetObject", "plantdb-inbox", "company_7/plant_3/a")


def test_file_change_is_picked_up_at_most_once_a_second(tmp_path: Path) -> None:
    clock = FakeClock()
    verifier, path = make_verifier(tmp_path, clock)
    write(path, entry(access_key_id="PLANT8KEY", prefixes=["company_8/"]))
    clock.now += 0.5
    assert "PLANT8KEY" not in verifier.credentials  # not looked at yet
    clock.now += 0.6
    assert set(verifier.credentials) == {MAIN.access_key_id, "PLANT8KEY"}
    verifier.authorize("PLANT8KEY", "GetObject", "plantdb-inbox", "company_8/plant_1/a")


def test_bad_file_on_reload_keeps_the_old_keys_and_logs_once_without_secrets(
    tmp_path: Path, log_lines: list[str]
) -> None:
    clock = FakeClock()
    verifier, path = make_verifier(tmp_path, clock)
    write(path, entry(secret_access_key="x" * 40, operations=["read", "explode"]))
    for _ in range(3):
        clock.now += 1.5
        assert set(verifier.credentials) == {MAIN.access_key_id, "PLANT7KEY"}
    errors = [line for line in log_lines if "not reloaded" in line]
    assert len(errors) == 1, log_lines
    assert "keeping the previous 1 key(s)" in errors[0] and "explode" in errors[0]
    assert not any(SECRET in line or "x" * 40 in line for line in log_lines)
    assert verifier.reload() is False  # an explicit reload (SIGHUP) fails the same way


def test_reload_on_demand_and_missing_file(tmp_path: Path, log_lines: list[str]) -> None:
    verifier, path = make_verifier(tmp_path, FakeClock())
    write(path, entry(access_key_id="PLANT9KEY"))
    assert verifier.reload() is True
    assert "PLANT7KEY" not in verifier.credentials and "PLANT9KEY" in verifier.credentials
    assert any("reloaded" in line and "1 key(s)" in line for line in log_lines)
    path.unlink()
    assert verifier.reload() is False
    assert "PLANT9KEY" in verifier.credentials


def test_store_without_a_file_never_touches_the_file_system() -> None:
    store = CredentialStore([MAIN], None)
    assert dict(store.credentials) == {MAIN.access_key_id: MAIN}
    assert store.reload() is False
    assert store.scope_of(MAIN.access_key_id) is None


class FakeReactor:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def callFromThread(self, f: Any, *args: Any) -> None:  # noqa: N802
        self.calls.append(f)


def test_sighup_handler_defers_to_the_reactor_chains_and_restores() -> None:
    import signal

    earlier: list[int] = []
    original = signal.signal(signal.SIGHUP, lambda signum, frame: earlier.append(signum))
    try:
        reactor = FakeReactor()
        reload_calls: list[int] = []
        restore = reload_on_sighup(lambda: reload_calls.append(1), reactor)
        os.kill(os.getpid(), signal.SIGHUP)
        assert reload_calls == []  # never run inside the signal handler itself
        assert len(reactor.calls) == 1 and earlier == [signal.SIGHUP]
        reactor.calls[0]()
        assert reload_calls == [1]
        restore()
        os.kill(os.getpid(), signal.SIGHUP)
        assert len(reactor.calls) == 1 and earlier == [signal.SIGHUP, signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, original)
