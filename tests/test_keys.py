"""Tenant key layout and key syntax rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantcdn.errors import S3Error
from plantcdn.keys import check_key_syntax, check_tenant_key, is_storable_key

PATTERN = r"[0-9]+"


def code_of(key: str) -> tuple[int, str]:
    with pytest.raises(S3Error) as info:
        check_tenant_key(key, PATTERN)
    return info.value.status, info.value.code


def test_layout_key_is_split_into_company_plant_and_rest() -> None:
    tenant = check_tenant_key("company_12/plant_3/raw/photo 1.jpg", PATTERN)
    assert (tenant.company, tenant.plant, tenant.rest) == ("12", "3", "raw/photo 1.jpg")


@pytest.mark.parametrize(
    "key",
    [
        "photo.jpg",
        "company_1/photo.jpg",
        "company_x/plant_1/a",
        "company_1/plant_/a",
        "plant_1/company_1/a",
        "Company_1/plant_1/a",
        "company_1/plant_1x/a",
    ],
)
def test_key_outside_the_layout_is_access_denied(key: str) -> None:
    assert code_of(key) == (403, "AccessDenied")


@pytest.mark.parametrize(
    "key",
    [
        "company_1/plant_1/../x",
        "company_1/plant_1/./x",
        "company_1/plant_1//x",
        "company_1/plant_1/x/",
        "/company_1/plant_1/x",
        "company_1/plant_1/a\\b",
        "company_1/plant_1/a\x00b",
        "company_1/plant_1/a\nb",
        "company_1/plant_1/\x7f",
        "company_1/plant_1/",
    ],
)
def test_malformed_key_is_invalid_argument(key: str) -> None:
    assert code_of(key) == (400, "InvalidArgument")


def test_key_over_1024_bytes_is_key_too_long() -> None:
    assert code_of("company_1/plant_1/" + "é" * 510) == (400, "KeyTooLongError")


def test_key_of_exactly_1024_bytes_is_accepted() -> None:
    prefix = "company_1/plant_1/"
    check_tenant_key(prefix + "a" * (1024 - len(prefix)), PATTERN)


def test_id_pattern_is_configurable() -> None:
    check_tenant_key("company_ab12/plant_x9/a", r"[a-z0-9]+")
    assert not is_storable_key("company_ab12/plant_x9/a", PATTERN)


@given(st.text(max_size=80))
def test_any_text_either_passes_or_raises_s3_error(key: str) -> None:
    try:
        tenant = check_tenant_key(key, PATTERN)
    except S3Error as error:
        assert error.status in (400, 403)
        return
    parts = key.split("/")
    assert ".." not in parts and "." not in parts and "" not in parts
    assert tenant.rest


@given(st.text(max_size=40))
def test_syntax_check_never_raises_other_errors(key: str) -> None:
    try:
        check_key_syntax(key)
    except S3Error:
        pass
