"""The one facade every route calls to decide whether a request may proceed.

Pure: no Twisted.  It answers "who signed this", "is this the bucket owner
the client expects", "may this key be written" and "is this metadata
acceptable", raising :class:`~plantcdn.errors.S3Error` with AWS's codes.
It also answers "may this key do this here" for scoped credentials
(:mod:`plantcdn.scopes`); the credential map it verifies against is the
main key pair plus the scoped ones, reloaded when their file changes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

from plantcdn import scopes, sigv2, sigv4
from plantcdn.config import Config
from plantcdn.credentials import Credential
from plantcdn.errors import S3Error
from plantcdn.keys import TenantKey, check_tenant_key

__all__ = ["MAX_USER_METADATA_BYTES", "Verifier", "user_metadata"]

#: "user-defined metadata is limited to 2 KB in size ... the sum of the number
#: of bytes in the UTF-8 encoding of each key and value" (S3 User Guide,
#: "Working with object metadata").
MAX_USER_METADATA_BYTES = 2048

_ACCOUNT_ID = re.compile(r"[0-9]{12}")


class Verifier:
    """Authentication, ownership and tenancy checks for one configuration."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.store = scopes.CredentialStore(
            config.credentials,
            config.credentials_file,
            initial=config.scoped_credentials,
            clock=clock,
        )

    @property
    def credentials(self) -> Mapping[str, Credential]:
        """Every key pair that may sign: the main one and the scoped ones (see plantcdn.scopes)."""
        return self.store.credentials

    def reload(self) -> bool:
        """Re-read the scoped credentials file (SIGHUP); a bad file keeps the old keys."""
        return self.store.reload()

    def authorize(
        self,
        access_key_id: str | None,
        operation: str,
        bucket: str | None,
        key_or_prefix: str | None,
    ) -> None:
        """403 ``AccessDenied`` unless the signer's scope allows *operation* on the key.

        *operation* is an S3 operation name (``call.operation``, or ``CopySource``
        for a copy's source); the main key pair may do everything.
        """
        scopes.authorize(
            self.store.scope_of(access_key_id),
            scopes.category_for(operation),
            bucket,
            key_or_prefix,
        )

    def authenticate(
        self,
        parts: sigv4.RequestParts,
        *,
        now: float,
        bucket: str | None = None,
        virtual_hosted: bool = False,
    ) -> sigv4.AuthResult:
        """Who signed the request; any flaw raises the S3 error AWS would send.

        SigV2 (``Authorization: AWS key:sig`` or ``?AWSAccessKeyId=&Signature=``)
        is still accepted by S3 and still produced by boto3's default
        ``generate_presigned_url`` against a custom endpoint, so it is verified too.
        """
        if sigv2.is_sigv2(parts):
            return sigv2.authenticate_v2(
                parts, self.credentials, now=now, bucket=bucket, virtual_hosted=virtual_hosted
            )
        return sigv4.authenticate(parts, self.credentials, now=now, region=self.config.region)

    def check_bucket_owner(self, headers: Mapping[str, str]) -> None:
        """Honour ``x-amz-expected-bucket-owner`` (S3 User Guide, "Verifying bucket ownership")."""
        expected = headers.get("x-amz-expected-bucket-owner")
        if expected is None:
            return
        if not _ACCOUNT_ID.fullmatch(expected.strip()):
            raise S3Error(
                "InvalidBucketOwnerAWSAccountID",
                "The value of the expected bucket owner parameter must be an AWS Account ID... "
                f"[{expected}]",
                status=400,
            )
        if self.config.account_id is not None and expected.strip() != self.config.account_id:
            raise S3Error("AccessDenied")

    def check_write_key(self, key: str) -> TenantKey:
        """A write must land in ``company_<id>/plant_<id>/<rest>``."""
        return check_tenant_key(key, self.config.tenant_id_pattern)


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``x-amz-meta-*`` headers (names lower-cased, without the prefix), size-checked."""
    meta = {
        name[len("x-amz-meta-") :]: value
        for name, value in headers.items()
        if name.startswith("x-amz-meta-")
    }
    size = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in meta.items())
    if size > MAX_USER_METADATA_BYTES:
        raise S3Error(
            "MetadataTooLarge",
            extra={"Size": str(size), "MaxSizeAllowed": str(MAX_USER_METADATA_BYTES)},
        )
    return meta
