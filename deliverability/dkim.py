"""DKIM keys and signatures (RFC 6376): RSA-SHA256 and Ed25519-SHA256 (RFC 8463) on every message.

The signature is built with dkimpy's own parts (its header parsing, relaxed canonicalization,
header selection and folding: the code verifiers share), and the private-key operation is done
by OpenSSL through `cryptography`: dkimpy's RSA is pure Python and costs about 11 ms per
message, OpenSSL about 0.4 ms. Both signatures share one body hash. Keys are parsed once per
process and domain; each Skeleton (one per step and send batch) asks the database which domain
signs, so a new or rotated key is used from the next batch on.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import threading
import time
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy

from deliverability.models import SendingDomain

logger = logging.getLogger(__name__)

RSA_KEY_BITS = 2048
SIGNATURE_HEADER = b"DKIM-Signature"
CANONICALIZATION = b"relaxed/relaxed"
POLICY = CanonicalizationPolicy.from_c_value(CANONICALIZATION)
# Signed when present (the composer writes all but Reply-To on every message).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"x-emailseq-id",
    b"feedback-id",
)
# Named once more than they occur: a second copy added on the way (or a Reply-To where there
# was none) breaks the signature instead of overriding what the reader sees (RFC 6376 8.15).
OVERSIGNED = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


# Keys -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    private: str  # as stored: PEM (RSA) or base64 of the 32-byte seed (Ed25519)
    public: str  # base64, as published in the p= tag


def rsa_key_generate() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(private=private.decode("ascii"), public=base64.b64encode(public).decode("ascii"))


def ed25519_key_generate() -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KeyPair(private=base64.b64encode(seed).decode("ascii"), public=base64.b64encode(public).decode("ascii"))


def selectors_for(moment: dt.datetime) -> tuple[str, str]:
    """Selectors named after the month the keys were made (RSA, Ed25519): a later rotation
    publishes new selectors beside the old ones, so mail in flight keeps verifying."""
    stamp = moment.strftime("%Y%m")
    return f"es{stamp}r", f"es{stamp}e"


def key_record(*, algorithm: str, public_key: str) -> str:
    """The TXT value to publish at <selector>._domainkey.<domain>."""
    return f"v=DKIM1; k={algorithm}; p={public_key}"


# Signing --------------------------------------------------------------------------------------


class _RsaKey:
    algorithm = b"rsa-sha256"

    def __init__(self, pem: str) -> None:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        self.key = key

    def sign(self, digest: bytes) -> bytes:
        return self.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


class _Ed25519Key:
    algorithm = b"ed25519-sha256"

    def __init__(self, seed: str) -> None:
        self.key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed, validate=True))

    def sign(self, digest: bytes) -> bytes:
        # RFC 8463: Ed25519 signs the SHA-256 hash of the header data, as dkimpy verifies it.
        return self.key.sign(digest)


class DkimSigner:
    """Signs messages for one domain with its RSA and Ed25519 keys."""

    def __init__(self, *, domain: str, keys: list[tuple[str, _RsaKey | _Ed25519Key]]) -> None:
        self.domain = domain.encode("ascii")
        self.keys = [(selector.encode("ascii"), key) for selector, key in keys]

    @classmethod
    def for_sending_domain(cls, sending_domain: SendingDomain) -> DkimSigner:
        """Raises ValueError when a stored key cannot be loaded."""
        return cls(
            domain=sending_domain.domain,
            keys=[
                (sending_domain.dkim_selector_rsa, _RsaKey(sending_domain.dkim_private_key_rsa)),
                (sending_domain.dkim_selector_ed25519, _Ed25519Key(sending_domain.dkim_private_key_ed25519)),
            ],
        )

    def sign(self, message: bytes) -> bytes:
        """`message` (CRLF line endings) with one DKIM-Signature header per key in front."""
        headers, body = dkim.rfc822_parse(message)
        canonical_headers = POLICY.canonicalize_headers(headers)
        body_hash = base64.b64encode(hashlib.sha256(POLICY.canonicalize_body(body)).digest())
        present = {name.lower() for name, _ in headers}
        include = tuple(name for name in SIGNED_HEADERS if name in present) + OVERSIGNED
        timestamp = str(int(time.time())).encode("ascii")
        signatures = [
            self._signature(selector, key, canonical_headers, include, body_hash, timestamp)
            for selector, key in self.keys
        ]
        return b"".join(signatures) + message

    def _signature(
        self,
        selector: bytes,
        key: _RsaKey | _Ed25519Key,
        canonical_headers: list[tuple[bytes, bytes]],
        include: tuple[bytes, ...],
        body_hash: bytes,
        timestamp: bytes,
    ) -> bytes:
        # As dkimpy's DKIM.sign and gen_header, with our key: the header is hashed with an
        # empty b= and without its final CRLF, then b= is filled in and the header refolded.
        fields = [
            (b"v", b"1"),
            (b"a", key.algorithm),
            (b"c", CANONICALIZATION),
            (b"d", self.domain),
            (b"q", b"dns/txt"),
            (b"s", selector),
            (b"t", timestamp),
            (b"h", b" : ".join(include)),
            (b"bh", body_hash),
            (b"b", b"0" * 60),  # forces b= onto its own line, so refolding leaves the rest as hashed
        ]
        unsigned = dkim.fold(b"; ".join(b"=".join(field) for field in fields), namelen=len(SIGNATURE_HEADER))
        unsigned = dkim.RE_BTAG.sub(b"\\1", unsigned)
        hasher = hashlib.sha256()
        dkim.hash_headers(hasher, POLICY, canonical_headers, include, (SIGNATURE_HEADER, b" " + unsigned), None)
        fields[-1] = (b"b", base64.b64encode(key.sign(hasher.digest())))
        value = b"; ".join(b"=".join(field) for field in fields) + b"\r\n"
        return SIGNATURE_HEADER + b": " + dkim.fold(value, namelen=len(SIGNATURE_HEADER))


# Which domain signs ---------------------------------------------------------------------------


def domain_and_parents(domain: str) -> list[str]:
    """`domain` and each parent of two labels or more, longest first: a.b.example.com gives
    a.b.example.com, b.example.com, example.com."""
    labels = domain.lower().rstrip(".").split(".")
    return [".".join(labels[index:]) for index in range(len(labels) - 1)]


_signers: dict[tuple[int, str], tuple[tuple[str, ...], DkimSigner | None]] = {}
_signers_lock = threading.Lock()


def signer_for(*, organization_id: int, from_email: str) -> DkimSigner | None:
    """The signer of the organization's sending domain that covers `from_email` (its domain or
    the nearest registered parent), or None when there is none. One query; the parsed keys are
    kept per process for as long as the stored ones stay the same."""
    from_domain = from_email.rpartition("@")[2].lower().rstrip(".")
    candidates = domain_and_parents(from_domain)
    if not candidates:
        return None
    sending_domain = (
        SendingDomain.objects.filter(organization_id=organization_id, domain__in=candidates)
        .only(
            "domain",
            "dkim_selector_rsa",
            "dkim_private_key_rsa",
            "dkim_selector_ed25519",
            "dkim_private_key_ed25519",
        )
        .order_by()
    )
    found = max(sending_domain, key=lambda row: len(row.domain), default=None)
    if found is None:
        return None
    fingerprint = (
        found.domain,
        found.dkim_selector_rsa,
        hashlib.sha256(found.dkim_private_key_rsa.encode()).hexdigest(),
        found.dkim_selector_ed25519,
        hashlib.sha256(found.dkim_private_key_ed25519.encode()).hexdigest(),
    )
    cache_key = (organization_id, from_domain)
    cached = _signers.get(cache_key)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    try:
        signer: DkimSigner | None = DkimSigner.for_sending_domain(found)
    except (ValueError, TypeError) as error:
        # A broken key must not stop the mail: it goes out unsigned, as before the domain was added.
        logger.error("DKIM keys of sending domain %s (id %s) cannot be loaded: %s", found.domain, found.pk, error)
        signer = None
    with _signers_lock:
        _signers[cache_key] = (fingerprint, signer)
    return signer
