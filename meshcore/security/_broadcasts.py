"""System broadcasts: how signed revocations ride the SWIM user-broadcast channel.

A system broadcast starts with `SYSTEM_PREFIX` (a NUL byte first, so it cannot be mistaken
for ordinary application text); `Node.events()` never shows them. A revocation broadcast is
``REVOCATION_PREFIX + revocation.encode()`` (about 170 bytes, well under the 1,024-byte user
payload limit). The authority's signature travels inside, so whoever relays it cannot forge
or alter it; receivers verify it against their own trusted authorities.
"""

from __future__ import annotations

from ._cert import Revocation, decode_revocation
from ._errors import CertificateError

__all__ = [
    "SYSTEM_PREFIX",
    "REVOCATION_PREFIX",
    "is_system_broadcast",
    "encode_revocation_broadcast",
    "decode_revocation_broadcast",
]

SYSTEM_PREFIX = b"\x00meshcore-sys\x00"
REVOCATION_PREFIX = SYSTEM_PREFIX + b"revocation\x00"


def is_system_broadcast(payload: bytes) -> bool:
    return payload.startswith(SYSTEM_PREFIX)


def encode_revocation_broadcast(revocation: Revocation) -> bytes:
    return REVOCATION_PREFIX + revocation.encode()


def decode_revocation_broadcast(payload: bytes) -> Revocation:
    """Parse (not verify) a revocation broadcast; raises CertificateError when it is not one
    or is malformed (reason ``cert_malformed`` / ``system_message_unknown``)."""
    if not payload.startswith(REVOCATION_PREFIX):
        raise CertificateError("not a revocation broadcast", reason="system_message_unknown")
    return decode_revocation(payload[len(REVOCATION_PREFIX) :])
