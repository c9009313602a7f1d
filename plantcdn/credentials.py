"""Access key pairs.  The secret never appears in a repr, a log or an error."""

from __future__ import annotations

from attrs import field, frozen

__all__ = ["DEV_ACCESS_KEY_ID", "DEV_SECRET_ACCESS_KEY", "Credential"]

#: The documented development key pair used when none is configured.  It is
#: public knowledge, so plantcdn refuses to listen beyond loopback with it.
DEV_ACCESS_KEY_ID = "PLANTCDNDEVACCESSKEY"
DEV_SECRET_ACCESS_KEY = "plantcdn-dev-secret-key-do-not-use-in-prod"


@frozen
class Credential:
    """One access key pair, as IAM would issue it."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
