"""Repository format 2 blobs: optionally zstd-compressed, AES-256-GCM-sealed byte strings (docs/storage-format.md)."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from dataclasses import dataclass, field

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 0xC2                 # first byte of every blob: "cloudbackup blob, format 2"; never the first byte of gzip
RAW, ZSTD = 0x00, 0x01         # second byte: how the plaintext inside is encoded
NONCE_SIZE, TAG_SIZE = 12, 16
HEADER_SIZE = 2 + NONCE_SIZE
OVERHEAD = HEADER_SIZE + TAG_SIZE
DATA_KEY_SIZE = 64             # 32 bytes AES-256 key, then 32 bytes HMAC-SHA256 key for object names

# What a blob holds; bound into its associated data, so one kind can never be passed off as another.
DATA, MANIFEST, INDEX = b"data", b"manifest", b"index"

ZSTD_LEVEL = 3
SAMPLE = 64 * 1024             # a larger buffer is compressed only if its first SAMPLE bytes shrink
MIN_SAVING = 0.10              # compressed bytes are kept only when at least 10 % smaller


class BlobError(ValueError):
    """A blob that is not a format-2 blob, or whose authentication tag does not match (damaged or forged)."""


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # ZstdCompressor objects are not safe to share between threads: one per thread.
    c = getattr(_local, "zc", None)
    if c is None:
        c = _local.zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "zd", None)
    if d is None:
        d = _local.zd = zstandard.ZstdDecompressor()
    return d


def maybe_compress(data: bytes | bytearray | memoryview) -> tuple[int, bytes | bytearray | memoryview]:
    """(ZSTD, compressed) when compressing pays (≥ MIN_SAVING smaller), else (RAW, data) untouched."""
    n = len(data)
    if n < 64:
        return RAW, data
    c = _compressor()
    if n > 2 * SAMPLE and len(c.compress(data[:SAMPLE])) > SAMPLE * (1 - MIN_SAVING):
        return RAW, data           # already compressed or random (photos, archives): don't spend the CPU
    packed = c.compress(data)
    if len(packed) > n * (1 - MIN_SAVING):
        return RAW, data
    return ZSTD, packed


def _aad(kind: bytes, customer_id: str, header: bytes) -> bytes:
    # The customer id is bound in: a blob copied into another customer's prefix does not open there. The key
    # is not: prune may copy a blob verbatim into another pack.
    return b"cloudbackup-blob/2\x00" + kind + b"\x00" + customer_id.encode("utf-8") + b"\x00" + header[:2]


@dataclass(frozen=True)
class DataKey:
    """A customer's data key: AES-256-GCM for blob contents, HMAC-SHA256 for content-addressed object names."""

    customer_id: str
    secret: bytes = field(repr=False)
    aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.secret) != DATA_KEY_SIZE:
            raise ValueError("a data key is 64 bytes")
        object.__setattr__(self, "aead", AESGCM(self.secret[:32]))

    def chunk_name(self, sha256_digest: bytes) -> str:
        """The keyed name of a chunk: HMAC-SHA256(mac key, sha256(chunk)), so the store cannot confirm a known file."""
        return hmac.new(self.secret[32:], sha256_digest, hashlib.sha256).hexdigest()

    def seal(self, kind: bytes, data: bytes | bytearray | memoryview, compress: bool = True) -> bytes:
        """version ‖ flags ‖ nonce ‖ AES-256-GCM(ciphertext ‖ tag), the plaintext zstd'd first when that pays."""
        flags, body = maybe_compress(data) if compress else (RAW, data)
        nonce = os.urandom(NONCE_SIZE)
        header = bytes((VERSION, flags)) + nonce
        return header + self.aead.encrypt(nonce, body, _aad(kind, self.customer_id, header))

    def open(self, kind: bytes, blob: bytes | bytearray | memoryview) -> bytes:
        """The plaintext of a sealed blob; BlobError when it is not one or its tag does not match."""
        if len(blob) < OVERHEAD or blob[0] != VERSION or blob[1] not in (RAW, ZSTD):
            raise BlobError("not a format-2 blob (bad header)")
        header = bytes(blob[:HEADER_SIZE])
        try:
            # A view, not a slice: slicing bytes would copy the whole ciphertext once more.
            body = self.aead.decrypt(header[2:], memoryview(blob)[HEADER_SIZE:], _aad(kind, self.customer_id, header))
        except InvalidTag:
            raise BlobError("authentication tag does not match: the blob is damaged or not this customer's") from None
        if header[1] == ZSTD:
            try:
                return _decompressor().decompress(body)
            except zstandard.ZstdError as exc:
                raise BlobError(f"zstd: {exc}") from None
        return body


def is_blob(data: bytes | bytearray | memoryview) -> bool:
    """Looks like a format-2 blob (the first byte); only for objects whose plaintext form cannot start so."""
    return len(data) >= OVERHEAD and data[0] == VERSION


def new_data_key(customer_id: str) -> DataKey:
    return DataKey(customer_id, os.urandom(DATA_KEY_SIZE))
