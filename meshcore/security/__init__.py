"""meshcore.security: identities, certificates, Noise links, sealed datagrams.

I/O-free: no trio, no sockets, no clock reads (time is an argument or an injected clock);
randomness for keys comes from the OS (os.urandom), never from a global `random`.
"""

from ._broadcasts import (
    REVOCATION_PREFIX,
    SYSTEM_PREFIX,
    decode_revocation_broadcast,
    encode_revocation_broadcast,
    is_system_broadcast,
)
from ._cert import (
    CERT_BYTES_MAX,
    Authority,
    AuthorityPublic,
    Certificate,
    Revocation,
    decode_certificate,
    decode_revocation,
)
from ._counters import Counters, DropLog
from ._credentials import Credentials, ThrowawayCluster, load_credentials, make_throwaway_cluster
from ._datagram import DATAGRAM_OVERHEAD_BYTES, DatagramSealer, DatagramStatistics
from ._errors import CertificateError, FrameError, HandshakeError
from ._files import (
    AuthorityDir,
    RevocationStore,
    load_authority_public,
    load_certificate,
    save_authority_public,
    save_certificate,
)
from ._framing import DEFAULT_FRAME_LIMITS, FrameDecoder, FrameEncoder, FrameLimits
from ._handshake import (
    PATTERN_IDS,
    HandshakeResult,
    IdentityHandshake,
    LinkSecurity,
    handshake_pair,
)
from ._keys import (
    SigningKey,
    load_public_key,
    load_secret_key,
    save_public_key,
    save_secret_key,
    verify_signature,
)
from ._noise import CipherState, NoiseHandshake
from ._ratelimit import RateLimiter
from ._replay import ReplayWindow
from ._statements import StatementSigner, StatementVerifier
from ._trust import TrustStore

__all__ = [
    "REVOCATION_PREFIX", "SYSTEM_PREFIX", "decode_revocation_broadcast",
    "encode_revocation_broadcast", "is_system_broadcast",
    "CERT_BYTES_MAX", "Authority", "AuthorityPublic", "Certificate", "Revocation",
    "decode_certificate", "decode_revocation",
    "Counters", "DropLog",
    "Credentials", "ThrowawayCluster", "load_credentials", "make_throwaway_cluster",
    "DATAGRAM_OVERHEAD_BYTES", "DatagramSealer", "DatagramStatistics",
    "CertificateError", "FrameError", "HandshakeError",
    "AuthorityDir", "RevocationStore", "load_authority_public", "load_certificate",
    "save_authority_public", "save_certificate",
    "DEFAULT_FRAME_LIMITS", "FrameDecoder", "FrameEncoder", "FrameLimits",
    "PATTERN_IDS", "HandshakeResult", "IdentityHandshake", "LinkSecurity", "handshake_pair",
    "SigningKey", "load_public_key", "load_secret_key", "save_public_key", "save_secret_key",
    "verify_signature",
    "CipherState", "NoiseHandshake",
    "RateLimiter", "ReplayWindow",
    "StatementSigner", "StatementVerifier",
    "TrustStore",
]
