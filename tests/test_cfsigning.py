"""Tests for :mod:`plantcdn.cfsigning`, fed by botocore's real CloudFront signer.

Every accepted URL here was produced by ``botocore.signers.CloudFrontSigner``
(the signer boto3 and django-storages use), every refusal starts from such a
URL with one mutation, and each asserts CloudFront's code plus our internal
reason.  No reactor, no clock: ``now`` is a constant.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plantcdn.cfsigning import (
    CLOUDFRONT_ERRORS,
    CONTENT_TYPE,
    CloudFrontDenied,
    CloudFrontPublicKey,
    _wildcard_match,
    load_public_keys,
    strip_signing_params,
    verify_signed_request,
)

NOW = 1_700_000_000
EXPIRES = NOW + 3600
KEY_ID = "K2JCJMDEHXQW5F"
OTHER_KEY_ID = "K3OTHERKEY0001"
CLIENT_IP = "192.0.2.10"
DOMAIN = "https://d111111abcdef8.cloudfront.net"
URL = f"{DOMAIN}/images/horizon.jpg"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PRIVATE_KEY = _rsa_key()
OTHER_PRIVATE_KEY = _rsa_key()
EC_PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


PUBLIC_KEYS = load_public_keys(
    {KEY_ID: _public_pem(PRIVATE_KEY), OTHER_KEY_ID: _public_pem(OTHER_PRIVATE_KEY)}
)


def _rsa_signer(
    key: rsa.RSAPrivateKey, algorithm: hashes.HashAlgorithm
) -> Callable[[bytes], bytes]:
    return lambda message: key.sign(message, padding.PKCS1v15(), algorithm)


SIGNER = CloudFrontSigner(KEY_ID, _rsa_signer(PRIVATE_KEY, hashes.SHA1()))


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _cf_b64(data: bytes) -> str:
    """CloudFront's URL-safe base64, as botocore writes it."""
    return base64.b64encode(data).decode().translate(str.maketrans("+=/", "-_~"))


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _verify(
    url: str,
    *,
    query: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    client_ip: str = CLIENT_IP,
    now: float = NOW,
    public_keys: Mapping[str, CloudFrontPublicKey] = PUBLIC_KEYS,
) -> None:
    verify_signed_request(
        resource_url=url,
        query=_query(url) if query is None else query,
        cookies=cookies or {},
        client_ip=client_ip,
        now=now,
        public_keys=public_keys,
    )


def _denied(url: str, **kwargs: object) -> CloudFrontDenied:
    with pytest.raises(CloudFrontDenied) as info:
        _verify(url, **kwargs)  # type: ignore[arg-type]
    return info.value


def _canned_url(url: str = URL, expires: int = EXPIRES) -> str:
    return str(SIGNER.generate_presigned_url(url, date_less_than=_at(expires)))


def _custom_url(
    url: str = URL,
    *,
    resource: str | None = None,
    expires: int = EXPIRES,
    starts: int | None = None,
    ip: str | None = None,
) -> str:
    policy = SIGNER.build_policy(
        resource or url,
        _at(expires),
        date_greater_than=_at(starts) if starts is not None else None,
        ip_address=ip,
    )
    return str(SIGNER.generate_presigned_url(url, policy=policy))


def _with_raw_policy(url: str, policy: bytes, signer: CloudFrontSigner = SIGNER) -> str:
    """A URL carrying *policy* verbatim, correctly signed: tests the parser, not the signature."""
    signature = signer.rsa_signer(policy)
    return f"{url}?Policy={_cf_b64(policy)}&Signature={_cf_b64(signature)}&Key-Pair-Id={KEY_ID}"


def _replace_param(url: str, name: str, value: str) -> str:
    base, _, query = url.partition("?")
    parts = [
        f"{name}={value}" if part.partition("=")[0] == name else part for part in query.split("&")
    ]
    return base + "?" + "&".join(parts)


def _drop_param(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base + "?" + "&".join(p for p in query.split("&") if p.partition("=")[0] != name)


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-~"


def _flip(encoded: str, index: int) -> str:
    """Change one character of CloudFront base64 so the decoded bytes change.

    Flipping the top bit of a sextet always changes the output, even in the
    last group, whose low bits may be unused; padding becomes a data character.
    """
    char = encoded[index]
    replacement = "A" if char == "_" else _ALPHABET[_ALPHABET.index(char) ^ 0b100000]
    return encoded[:index] + replacement + encoded[index + 1 :]


# --- accepted ---------------------------------------------------------------


def test_botocore_canned_url_is_served() -> None:
    _verify(_canned_url())


def test_botocore_canned_url_with_own_query_parameters_is_served() -> None:
    _verify(_canned_url(f"{URL}?color=red&size=medium"))


def test_canned_url_with_signing_parameters_before_own_parameters_is_served() -> None:
    """CloudFront strips its parameters wherever they are ("rare circumstances")."""
    signed = _canned_url(f"{URL}?color=red")
    base, _, query = signed.partition("?")
    own, _, signing = query.partition("&")
    _verify(f"{base}?{signing}&{own}")


def test_botocore_custom_policy_url_is_served() -> None:
    _verify(_custom_url(resource=f"{DOMAIN}/images/*", starts=NOW - 60, ip="192.0.2.0/24"))


def test_custom_policy_without_resource_allows_every_url() -> None:
    policy = json.dumps(
        {"Statement": [{"Condition": {"DateLessThan": {"AWS:EpochTime": EXPIRES}}}]}
    ).encode()
    _verify(_with_raw_policy(f"{DOMAIN}/anything/at/all", policy))


def test_custom_policy_with_whitespace_like_aws_examples_is_served() -> None:
    policy = (
        f'{{\n "Statement": [\n  {{\n   "Resource":"{URL}",\n   "Condition":{{\n'
        f'    "DateLessThan":{{"AWS:EpochTime":{EXPIRES}}}\n   }}\n  }}\n ]\n}}\n'
    ).encode()
    _verify(_with_raw_policy(URL, policy))


def test_custom_policy_question_mark_wildcard_matches_query_separator() -> None:
    _verify(_custom_url(f"{URL}?size=large", resource=f"{URL}?size=*"))


def test_signed_cookies_with_canned_policy_are_served() -> None:
    policy = SIGNER.build_policy(URL, _at(EXPIRES)).encode()
    cookies = {
        "CloudFront-Expires": str(EXPIRES),
        "CloudFront-Signature": _cf_b64(SIGNER.rsa_signer(policy)),
        "CloudFront-Key-Pair-Id": KEY_ID,
    }
    _verify(URL, cookies=cookies)


def _custom_cookies(resource: str, **conditions: object) -> dict[str, str]:
    policy = SIGNER.build_policy(resource, _at(EXPIRES), **conditions).encode()
    return {
        "CloudFront-Policy": _cf_b64(policy),
        "CloudFront-Signature": _cf_b64(SIGNER.rsa_signer(policy)),
        "CloudFront-Key-Pair-Id": KEY_ID,
    }


def test_signed_cookies_with_custom_wildcard_policy_are_served() -> None:
    cookies = _custom_cookies(f"{DOMAIN}/images/*", ip_address="192.0.2.0/24")
    _verify(f"{DOMAIN}/images/a/b.png?v=2", cookies=cookies)


def test_sha256_signature_with_hash_algorithm_parameter_is_served() -> None:
    signer = CloudFrontSigner(KEY_ID, _rsa_signer(PRIVATE_KEY, hashes.SHA256()))
    url = str(signer.generate_presigned_url(URL, date_less_than=_at(EXPIRES)))
    _verify(url + "&Hash-Algorithm=SHA256")


def test_ecdsa_key_group_signature_is_served() -> None:
    keys = load_public_keys({KEY_ID: _public_pem(EC_PRIVATE_KEY)})
    signer = CloudFrontSigner(
        KEY_ID, lambda message: EC_PRIVATE_KEY.sign(message, ec.ECDSA(hashes.SHA256()))
    )
    url = str(signer.generate_presigned_url(URL, date_less_than=_at(EXPIRES)))
    _verify(url + "&Hash-Algorithm=SHA256", public_keys=keys)


def test_ipv6_source_range_admits_an_address_inside_it() -> None:
    _verify(_custom_url(ip="2001:db8::/32"), client_ip="2001:db8::1")


def test_ipv4_mapped_ipv6_client_address_counts_as_ipv4() -> None:
    _verify(_custom_url(ip="192.0.2.0/24"), client_ip="::ffff:192.0.2.10")


def test_source_ip_with_host_bits_set_is_masked_like_aws_sdk_examples() -> None:
    _verify(_custom_url(ip="192.0.2.77/24"))


# --- precedence ---------------------------------------------------------------


def test_signed_url_takes_precedence_over_bad_cookies() -> None:
    cookies = {"CloudFront-Key-Pair-Id": "nope", "CloudFront-Signature": "x"}
    _verify(_canned_url(), cookies=cookies)


def test_signed_url_parameters_hide_valid_cookies() -> None:
    """ "CloudFront determines whether to return the file ... based only on the signed URL"."""
    cookies = _custom_cookies(URL)
    denied = _denied(f"{URL}?Key-Pair-Id=K000UNKNOWN", cookies=cookies)
    assert (denied.code, denied.reason) == ("InvalidKey", "unknown-key-pair-id")


def test_custom_policy_wins_over_expires_sent_alongside() -> None:
    _verify(_custom_url() + f"&Expires={NOW - 10}")


# --- refusals -------------------------------------------------------------------


def test_no_credentials_at_all_is_missing_key() -> None:
    denied = _denied(URL)
    assert (denied.status, denied.code) == (403, "MissingKey")
    assert denied.message == "Missing Key-Pair-Id query parameter or cookie value"


def test_empty_key_pair_id_is_missing_key() -> None:
    denied = _denied(_replace_param(_canned_url(), "Key-Pair-Id", ""))
    assert denied.code == "MissingKey"


def test_cookies_without_key_pair_id_are_missing_key() -> None:
    cookies = _custom_cookies(URL)
    del cookies["CloudFront-Key-Pair-Id"]
    assert _denied(URL, cookies=cookies).code == "MissingKey"


def test_unknown_key_pair_id_is_invalid_key_before_anything_else() -> None:
    denied = _denied(f"{URL}?Policy=placeholder&Signature=placeholder&Key-Pair-Id=K000UNKNOWN")
    assert (denied.code, denied.message) == ("InvalidKey", "Unknown Key")


def test_signature_from_another_trusted_key_is_access_denied() -> None:
    denied = _denied(_replace_param(_canned_url(), "Key-Pair-Id", OTHER_KEY_ID))
    assert (denied.code, denied.reason) == ("AccessDenied", "bad-signature")


def test_missing_signature_is_access_denied() -> None:
    denied = _denied(_drop_param(_canned_url(), "Signature"))
    assert (denied.code, denied.reason) == ("AccessDenied", "missing-signature")


def test_signature_outside_cloudfront_alphabet_is_malformed_signature() -> None:
    denied = _denied(_replace_param(_canned_url(), "Signature", "not*base64"))
    assert (denied.code, denied.message) == ("MalformedSignature", "Could not unencode Signature")


def test_neither_expires_nor_policy_is_malformed_policy() -> None:
    denied = _denied(_drop_param(_canned_url(), "Expires"))
    assert (denied.code, denied.message, denied.reason) == (
        "MalformedPolicy",
        "Malformed Policy",
        "missing-policy",
    )


def test_cookies_missing_policy_cookie_is_malformed_policy() -> None:
    cookies = _custom_cookies(URL)
    del cookies["CloudFront-Policy"]
    assert _denied(URL, cookies=cookies).code == "MalformedPolicy"


@pytest.mark.parametrize("expires", ["1700003600000", "17000x3600", "-1", "+1700003600", ""])
def test_expires_that_is_not_32_bit_unix_seconds_is_malformed_policy(expires: str) -> None:
    """A millisecond timestamp is what aws-sdk-js#2236 sent to get MalformedPolicy."""
    denied = _denied(_replace_param(_canned_url(), "Expires", expires))
    assert (denied.code, denied.reason) == ("MalformedPolicy", "expires")


def test_expired_canned_url_is_access_denied() -> None:
    denied = _denied(_canned_url(), now=EXPIRES)
    assert (denied.status, denied.code, denied.reason) == (403, "AccessDenied", "expired")
    assert denied.message == "Access denied"


def test_canned_url_is_served_until_the_second_before_expiry() -> None:
    _verify(_canned_url(), now=EXPIRES - 0.001)


def test_expired_custom_policy_is_access_denied() -> None:
    assert _denied(_custom_url(), now=EXPIRES + 1).reason == "expired"


def test_expired_signed_cookie_is_access_denied() -> None:
    assert _denied(URL, cookies=_custom_cookies(URL), now=EXPIRES).reason == "expired"


def test_request_before_date_greater_than_is_access_denied() -> None:
    denied = _denied(_custom_url(starts=NOW + 60))
    assert (denied.code, denied.reason) == ("AccessDenied", "not-yet-valid")


def test_request_from_outside_the_source_range_is_access_denied() -> None:
    denied = _denied(_custom_url(ip="198.51.100.0/24"))
    assert (denied.code, denied.reason) == ("AccessDenied", "ip")


def test_ipv6_client_against_ipv4_range_is_access_denied() -> None:
    assert _denied(_custom_url(ip="192.0.2.0/24"), client_ip="2001:db8::1").reason == "ip"


def test_unparseable_client_address_never_matches_a_range() -> None:
    assert _denied(_custom_url(ip="192.0.2.0/24"), client_ip="unknown").reason == "ip"


def test_custom_policy_for_another_path_is_access_denied() -> None:
    denied = _denied(_custom_url(resource=f"{DOMAIN}/private/*"))
    assert (denied.code, denied.reason) == ("AccessDenied", "resource")


def test_custom_policy_url_used_on_another_host_is_access_denied() -> None:
    signed = _custom_url()
    moved = signed.replace("d111111abcdef8", "d222222abcdef8")
    assert _denied(moved).reason == "resource"


def test_canned_url_used_on_another_path_fails_its_signature() -> None:
    signed = _canned_url()
    denied = _denied(signed.replace("horizon.jpg", "sunset.jpg"))
    assert (denied.code, denied.reason) == ("AccessDenied", "bad-signature")


def test_canned_url_with_an_added_query_parameter_fails_its_signature() -> None:
    assert _denied(_canned_url() + "&color=red").reason == "bad-signature"


def test_sha1_signature_claiming_sha256_is_access_denied() -> None:
    assert _denied(_canned_url() + "&Hash-Algorithm=SHA256").reason == "bad-signature"


def test_unknown_hash_algorithm_is_access_denied() -> None:
    assert _denied(_canned_url() + "&Hash-Algorithm=MD5").reason == "hash-algorithm"


# --- malformed custom policies --------------------------------------------------


def _statement(condition: object, **extra: object) -> bytes:
    return json.dumps({"Statement": [{"Resource": URL, "Condition": condition, **extra}]}).encode()


_DLT = {"DateLessThan": {"AWS:EpochTime": EXPIRES}}


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(_statement({}), id="no-date-less-than"),
        pytest.param(_statement({"DateLessThan": {"AWS:EpochTime": str(EXPIRES)}}), id="quoted"),
        pytest.param(_statement({"DateLessThan": {"AWS:EpochTime": EXPIRES + 0.5}}), id="float"),
        pytest.param(_statement({"DateLessThan": {"AWS:EpochTime": True}}), id="bool"),
        pytest.param(_statement({"DateLessThan": {"AWS:EpochTime": 2**31}}), id="past-2038"),
        pytest.param(_statement({"DateLessThan": {"EpochTime": EXPIRES}}), id="abbreviated"),
        pytest.param(_statement({**_DLT, "DateBefore": {"AWS:EpochTime": 1}}), id="unknown"),
        pytest.param(_statement({**_DLT, "IpAddress": {"AWS:SourceIp": "banana"}}), id="cidr"),
        pytest.param(_statement({**_DLT, "IpAddress": {"AWS:SourceIp": 17}}), id="ip-type"),
        pytest.param(_statement(_DLT, Effect="Allow"), id="statement-key"),
        pytest.param(json.dumps({"Statement": []}).encode(), id="no-statement"),
        pytest.param(
            json.dumps({"Statement": [{"Condition": _DLT}, {"Condition": _DLT}]}).encode(),
            id="two-statements",
        ),
        pytest.param(
            json.dumps({"Statement": [{"Resource": 7, "Condition": _DLT}]}).encode(),
            id="resource-type",
        ),
        pytest.param(
            b'{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":1},'
            b'"DateLessThan":{"AWS:EpochTime":%d}}}]}' % (URL.encode(), EXPIRES),
            id="duplicate-key",
        ),
        pytest.param(
            b'{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":NaN}}}]}', id="nan"
        ),
        pytest.param(b"[" * 3000 + b"]" * 3000, id="deep-nesting"),
    ],
)
def test_correctly_signed_but_malformed_custom_policy_is_malformed_policy(policy: bytes) -> None:
    denied = _denied(_with_raw_policy(URL, policy))
    assert (denied.code, denied.reason) == ("MalformedPolicy", "policy-document")


def test_policy_that_is_not_cloudfront_base64_is_malformed_policy() -> None:
    denied = _denied(_replace_param(_custom_url(), "Policy", "e30.e30"))
    assert (denied.code, denied.reason) == ("MalformedPolicy", "policy-encoding")


def test_oversized_policy_is_malformed_policy() -> None:
    assert _denied(_replace_param(_custom_url(), "Policy", "A" * 9000)).code == "MalformedPolicy"


# --- single-byte tampering ---------------------------------------------------------


def _assert_every_flip_refused(signed: str, name: str, allowed: set[str]) -> None:
    value = _query(signed)[name]
    for index in range(len(value)):
        with pytest.raises(CloudFrontDenied) as info:
            _verify(_replace_param(signed, name, _flip(value, index)))
        assert info.value.code in allowed, (index, info.value)


def test_every_single_character_change_to_a_canned_signature_is_refused() -> None:
    _assert_every_flip_refused(_canned_url(), "Signature", {"AccessDenied", "MalformedSignature"})


def test_every_single_character_change_to_a_custom_policy_is_refused() -> None:
    signed = _custom_url(resource=f"{DOMAIN}/images/*", ip="192.0.2.0/24")
    _assert_every_flip_refused(signed, "Policy", {"AccessDenied", "MalformedPolicy"})


def test_every_single_digit_change_to_expires_is_refused() -> None:
    signed = _canned_url()
    expires = _query(signed)["Expires"]
    for index, digit in enumerate(expires):
        changed = expires[:index] + str((int(digit) + 1) % 10) + expires[index + 1 :]
        denied = _denied(_replace_param(signed, "Expires", changed))
        assert denied.code in {"AccessDenied", "MalformedPolicy"}


def test_every_single_character_change_to_the_url_is_refused() -> None:
    for signed, allowed in [
        (_canned_url(f"{URL}?size=large"), {"bad-signature"}),
        (_custom_url(f"{URL}?size=large"), {"resource"}),
    ]:
        base = signed.partition("&Expires=")[0].partition("&Policy=")[0]
        rest = signed[len(base) :]
        for index in range(len(DOMAIN), len(base)):
            char = base[index]
            if char in "?&=":
                continue
            changed = base[:index] + ("b" if char != "b" else "c") + base[index + 1 :]
            denied = _denied(changed + rest)
            assert denied.reason in allowed, (changed, denied)


def test_every_single_character_change_to_the_key_pair_id_is_refused() -> None:
    signed = _canned_url()
    for index in range(len(KEY_ID)):
        changed = KEY_ID[:index] + ("Z" if KEY_ID[index] != "Z" else "Y") + KEY_ID[index + 1 :]
        assert _denied(_replace_param(signed, "Key-Pair-Id", changed)).code == "InvalidKey"


# --- error documents ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "body"),
    [
        (
            "MissingKey",
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>MissingKey</Code>'
            b"<Message>Missing Key-Pair-Id query parameter or cookie value</Message></Error>",
        ),
        (
            "InvalidKey",
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidKey</Code>'
            b"<Message>Unknown Key</Message></Error>",
        ),
        (
            "MalformedPolicy",
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>MalformedPolicy</Code>'
            b"<Message>Malformed Policy</Message></Error>",
        ),
        (
            "MalformedSignature",
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>MalformedSignature</Code>'
            b"<Message>Could not unencode Signature</Message></Error>",
        ),
        (
            "AccessDenied",
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
            b"<Message>Access denied</Message></Error>",
        ),
    ],
)
def test_error_document_is_cloudfronts_one_line_body(code: str, body: bytes) -> None:
    assert CloudFrontDenied(code, "test").render_xml() == body


def test_access_denied_body_is_the_110_bytes_cloudfront_sends() -> None:
    """aws-sdk-ruby#1391 shows ``Content-Length: 110`` and ``Content-Type: text/xml``."""
    assert len(CloudFrontDenied("AccessDenied", "expired").render_xml()) == 110
    assert CONTENT_TYPE == "text/xml"


def test_every_cloudfront_refusal_is_a_403() -> None:
    assert {status for status, _ in CLOUDFRONT_ERRORS.values()} == {403}


def test_refusal_repr_and_message_carry_no_signature_material() -> None:
    signed = _replace_param(_canned_url(), "Key-Pair-Id", OTHER_KEY_ID)
    denied = _denied(signed)
    signature = _query(signed)["Signature"]
    assert signature not in repr(denied) and signature not in str(denied)


# --- helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        (f"{URL}?Expires=1&Signature=s&Key-Pair-Id=k", URL),
        (f"{URL}?size=large&Expires=1&Signature=s&Key-Pair-Id=k", f"{URL}?size=large"),
        (f"{URL}?Policy=p&Signature=s&Key-Pair-Id=k&size=large", f"{URL}?size=large"),
        (f"{URL}?a=1&Hash-Algorithm=SHA256&b=2", f"{URL}?a=1&b=2"),
        (f"{URL}?expires=1", f"{URL}?expires=1"),
        (f"{URL}?a=%20b&c", f"{URL}?a=%20b&c"),
        (URL, URL),
    ],
)
def test_strip_signing_params_removes_only_cloudfronts_parameters(url: str, stripped: str) -> None:
    assert strip_signing_params(url) == stripped


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (f"{DOMAIN}/*game_download.zip*", f"{DOMAIN}/game_download.zip", True),
        (f"{DOMAIN}/*game_download.zip*", f"{DOMAIN}/example_game_download.zip?license=yes", True),
        (f"{DOMAIN}/*game_download.zip*", f"{DOMAIN}/game_download.tar", False),
        ("http*://d111111abcdef8.cloudfront.net/*", URL, True),
        ("*", URL, True),
        (f"{DOMAIN}/images/horizon.jp?", URL, True),
        (f"{DOMAIN}/images/horizon.j?", URL, False),
        (f"{DOMAIN}/Images/*", URL, False),
        (URL, URL + "x", False),
    ],
)
def test_wildcard_matching_follows_the_custom_policy_page(
    pattern: str, text: str, matches: bool
) -> None:
    assert _wildcard_match(pattern, text) is matches


def test_wildcard_matching_stays_fast_on_hostile_patterns() -> None:
    started = time.perf_counter()
    assert not _wildcard_match("*a" * 2000 + "b", "a" * 4000)
    assert time.perf_counter() - started < 5


def test_load_public_keys_rejects_non_pem_naming_the_key_id() -> None:
    with pytest.raises(ValueError, match=KEY_ID):
        load_public_keys({KEY_ID: "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"})


def test_load_public_keys_rejects_key_types_cloudfront_does_not_sign_with() -> None:
    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match="neither RSA nor ECDSA"):
        load_public_keys({KEY_ID: pem})


# --- property tests -------------------------------------------------------------------

_FIELD_NAMES = ["Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm"]
_values = st.one_of(
    st.text(max_size=60),
    st.sampled_from([KEY_ID, OTHER_KEY_ID, "", "SHA1", "SHA256", str(EXPIRES), "A_", "~~~~"]),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    query=st.dictionaries(st.sampled_from(_FIELD_NAMES + ["color"]), _values, max_size=6),
    cookies=st.dictionaries(
        st.sampled_from([f"CloudFront-{name}" for name in _FIELD_NAMES] + ["session"]),
        _values,
        max_size=6,
    ),
    url=st.text(max_size=80),
    client_ip=st.text(max_size=40),
    now=st.floats(allow_nan=True, allow_infinity=True),
)
def test_random_queries_and_cookies_only_ever_raise_cloudfront_denied(
    query: dict[str, str], cookies: dict[str, str], url: str, client_ip: str, now: float
) -> None:
    with pytest.raises(CloudFrontDenied):
        verify_signed_request(
            resource_url=url,
            query=query,
            cookies=cookies,
            client_ip=client_ip,
            now=now,
            public_keys=PUBLIC_KEYS,
        )


@settings(max_examples=300)
@given(policy=st.text(max_size=300), signature=st.text(max_size=40))
def test_random_policy_strings_only_ever_raise_cloudfront_denied(
    policy: str, signature: str
) -> None:
    with pytest.raises(CloudFrontDenied):
        _verify(URL, query={"Policy": policy, "Signature": signature, "Key-Pair-Id": KEY_ID})


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Statement",
                    "Resource",
                    "Condition",
                    "DateLessThan",
                    "DateGreaterThan",
                    "IpAddress",
                    "AWS:EpochTime",
                    "AWS:SourceIp",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(document=_json, client_ip=st.sampled_from([CLIENT_IP, "2001:db8::1", "junk"]))
def test_correctly_signed_random_policy_documents_never_raise_anything_else(
    document: object, client_ip: str
) -> None:
    """Signed, so the parser and the conditions see every shape, not just the signature check."""
    try:
        _verify(_with_raw_policy(URL, json.dumps(document).encode()), client_ip=client_ip)
    except CloudFrontDenied:
        pass


# --- django-storages -------------------------------------------------------------------


def test_django_storages_cloudfront_url_verifies() -> None:
    """django-storages signs with botocore's canned policy behind ``custom_domain``."""
    pytest.importorskip("storages")
    django_conf = pytest.importorskip("django.conf")
    if not django_conf.settings.configured:
        django_conf.settings.configure(USE_TZ=True)
    from storages.backends.s3 import S3Storage

    storage = S3Storage(
        bucket_name="plantcdn-test",
        custom_domain="d111111abcdef8.cloudfront.net",
        cloudfront_key=_private_pem(PRIVATE_KEY),
        cloudfront_key_id=KEY_ID,
        querystring_auth=True,
        querystring_expire=600,
    )
    url = storage.url("photos/summer 2024/leaf.jpg")
    assert url.startswith("https://d111111abcdef8.cloudfront.net/photos/summer%202024/leaf.jpg?")
    _verify(url, now=time.time())
    assert _denied(url, now=time.time() + 3600).reason == "expired"
