"""The customer's repository in S3: reading its snapshots, and the writer that stores packs and chunks.

The format itself (keys, manifest, index) is `backup.format`, the sealed blobs of format 2 `backup.blob`, the
customer's data key `backup.keys`; the bucket operations are `edges.s3`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from cloudbackup.backup import blob, keys
from cloudbackup.backup import format as snap
from cloudbackup.backup.format import SHA256_META, customer_prefix, object_key
from cloudbackup.backup.options import EngineOptions
from cloudbackup.backup.walk import RemoteFile
from cloudbackup.edges.s3 import ObjectStore


def latest_snapshot_id(store: ObjectStore, customer_id: str) -> str | None:
    ids = list_snapshots(store, customer_id)
    return ids[-1] if ids else None


def list_snapshots(store: ObjectStore, customer_id: str) -> list[str]:
    prefix = customer_prefix(customer_id)
    return sorted(sid for k, _ in store.list_keys(prefix + snap.SNAPSHOTS)
                  if (sid := snap.snapshot_id_of(k[len(prefix):])) is not None)


def load_manifest(store: ObjectStore, customer_id: str, snapshot_id: str | None = None) -> snap.Manifest | None:
    """The named snapshot, or the latest one; None when the customer has none yet."""
    snapshot_id = snapshot_id or latest_snapshot_id(store, customer_id)
    if snapshot_id is None:
        return None
    raw = store.get_bytes(object_key(customer_id, snap.snapshot_key(snapshot_id)))
    if not blob.is_blob(raw):
        return snap.decode_manifest(raw)          # format 1: gzip (its first byte is 0x1f, never a blob's)
    manifest = snap.parse_manifest(keys.require(store, customer_id).open(blob.MANIFEST, raw))
    if manifest.header.snapshot_id != snapshot_id or manifest.header.customer_id != customer_id:
        # A sealed manifest copied over another snapshot's key (a rollback) opens, but names itself.
        raise blob.BlobError(f"manifest {snapshot_id} of {customer_id} holds snapshot "
                             f"{manifest.header.snapshot_id} of {manifest.header.customer_id}")
    return manifest


def write_manifest(store: ObjectStore, customer_id: str, manifest: snap.Manifest) -> None:
    """PUT a snapshot's manifest, sealed (format 2, `cloudbackup-snapshot/3`), in one PUT: the snapshot exists,
    or is replaced, at once. A format-1 manifest given here is written as format 2: its plaintext lines say so
    (no `sealed` flag)."""
    key = keys.data_key(store, customer_id, create=True)
    assert key is not None
    header = replace(manifest.header, format=snap.FORMAT)
    body = key.seal(blob.MANIFEST, snap.manifest_lines(snap.Manifest(header, manifest.files)))
    store.put_bytes(object_key(customer_id, snap.snapshot_key(manifest.header.snapshot_id)), body,
                    metadata={SHA256_META: hashlib.sha256(body).hexdigest()})


def read_index(store: ObjectStore, customer_id: str, key: str) -> list[snap.FileEntry]:
    """An index file (full key): plaintext JSON (format 1) or a sealed blob (format 2)."""
    raw = store.get_bytes(key)
    if raw[:1] == b"{":
        return snap.decode_index(raw)
    return snap.decode_index(keys.require(store, customer_id).open(blob.INDEX, raw))


def stored_bytes(store: ObjectStore, customer_id: str) -> int:
    """Bytes held for the customer: the sum of its object sizes under its prefix (docs/storage-format.md)."""
    return sum(size for _key, size in store.list_keys(customer_prefix(customer_id)))


class MemoryBudget:
    """Bytes read but not yet stored; readers wait while the budget is spent."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.cond = threading.Condition()

    def acquire(self, n: int) -> int:
        n = min(n, self.limit)
        with self.cond:
            self.cond.wait_for(lambda: self.used + n <= self.limit)
            self.used += n
        return n

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


@dataclass
class _Pack:
    pack_id: str
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    entries: list[snap.FileEntry] = field(default_factory=list)


class RepositoryWriter:
    """The customer's stored objects as one run sees them: known blobs, uploads, packs (thread-safe)."""

    def __init__(self, store: ObjectStore, customer_id: str, options: EngineOptions,
                 data_key: blob.DataKey | None = None) -> None:
        self.store, self.customer_id, self.options = store, customer_id, options
        # KeyUnavailable (no configured master key unwraps the customer's key) stops the run here, before anything
        # is written. A customer without a key file gets one with its first object (see `data_key`).
        self._data_key = data_key or keys.data_key(store, customer_id, fresh=True)
        self._key_lock = threading.Lock()
        self.bytes_uploaded = self.objects_uploaded = 0
        self.lock = threading.Lock()
        self.small: dict[str, tuple[str, int, int]] = {}   # sha256 → (pack key, offset, length)
        self.data_keys: dict[str, int] = {}       # chunk key (relative) → its stored size: a ref names the blob
        self.sealing: dict[str, Future[int]] = {}  # chunks being stored right now, by key
        self.pack: _Pack | None = None
        self.budget = MemoryBudget(options.in_flight_bytes)
        self.pool = ThreadPoolExecutor(options.upload_threads, thread_name_prefix="upload")
        self.futures: list[Future] = []
        self.index_keys: list[str] = []
        self.uploaded: set[str] = set()     # keys (relative) PUT by this run

    def key(self, relative: str) -> str:
        return object_key(self.customer_id, relative)

    @property
    def data_key(self) -> blob.DataKey:
        """The customer's data key; its key file is written just before the customer's first object, so a run
        that stores nothing (an unreachable server, an empty area) leaves nothing behind either."""
        if self._data_key is None:
            with self._key_lock:
                if self._data_key is None:
                    self._data_key = keys.data_key(self.store, self.customer_id, create=True)
        assert self._data_key is not None
        return self._data_key

    def learn(self, entries: list[snap.FileEntry]) -> None:
        for e in entries:
            for key, offset, length in e.chunks:
                # A format-1 (plaintext) range never serves a new sealed line: only sealed small files dedup.
                if key.startswith(snap.PACKS) and len(e.chunks) == 1 and e.sealed:
                    self.small.setdefault(e.sha256, (key, offset, length))
                elif key.startswith(snap.DATA):
                    self.data_keys.setdefault(key, length)

    def _put(self, relative: str, data: bytes | bytearray, sha256: str | None) -> None:
        """PUT one pack (with the sha256 of its body in its metadata) or one sealed chunk (sha256 None: its GCM tag
        authenticates it, so its body is neither hashed nor signed; docs/storage-format.md)."""
        if sha256 is None:
            self.store.put_bytes(self.key(relative), data, unsigned_payload=True)
        else:
            self.store.put_bytes(self.key(relative), data, metadata={SHA256_META: sha256})
        with self.lock:
            self.bytes_uploaded += len(data)
            self.objects_uploaded += 1
            self.uploaded.add(relative)

    # -- small files: packs ------------------------------------------------------------------------------
    def add_small(self, f: RemoteFile, data: bytes | bytearray) -> snap.FileEntry:
        sha = hashlib.sha256(data).hexdigest()
        sealed = None
        with self.lock:
            known = sha in self.small
        # Compressed and encrypted outside the lock, so readers seal in parallel; each file is its own blob, so
        # prune can copy its range alone. A duplicate sealed meanwhile by another reader is simply dropped.
        body = None if known or not data else self.data_key.seal(blob.DATA, data)
        with self.lock:
            ref = self.small.get(sha)
            if ref is None and body is not None:
                if self.pack is None:
                    self.pack = _Pack(secrets.token_hex(16))
                ref = (snap.pack_key(self.pack.pack_id), self.pack.size, len(body))
                self.pack.parts.append(body)
                self.pack.size += len(body)
                self.small[sha] = ref
            entry = snap.FileEntry(f.path, f.size, f.mtime, f.mode, sha, (ref,) if ref else (), sealed=True)
            if self.pack is not None and ref and ref[0] == snap.pack_key(self.pack.pack_id):
                self.pack.entries.append(entry)
                if self.pack.size >= self.options.pack_target:
                    sealed, self.pack = self.pack, None
        if sealed:
            self._submit_pack(sealed)
        return entry

    def flush(self) -> None:
        with self.lock:
            sealed, self.pack = self.pack, None
        if sealed and sealed.parts:
            self._submit_pack(sealed)

    def _submit_pack(self, pack: _Pack) -> None:
        held = self.budget.acquire(pack.size)

        def upload() -> None:
            try:
                body = b"".join(pack.parts)
                self._put(snap.pack_key(pack.pack_id), body, hashlib.sha256(body).hexdigest())
                self.write_index(pack.pack_id, pack.entries)
            finally:
                self.budget.release(held)

        with self.lock:
            self.futures.append(self.pool.submit(upload))

    def write_index(self, name: str, entries: list[snap.FileEntry]) -> None:
        """After the bytes arrived: lets an interrupted run's successor skip them (removed with the snapshot)."""
        relative = f"{snap.INDEX}{name}.json"
        self.store.put_bytes(self.key(relative), self.data_key.seal(blob.INDEX, snap.encode_index(entries)))
        with self.lock:
            self.index_keys.append(relative)

    # -- large files: content-addressed chunks -----------------------------------------------------------
    def add_chunk(self, data: bytes | bytearray, held: int) -> Future[tuple[str, int]]:
        """Queue one chunk of a large file; the future gives its key (relative) and stored size once it is stored
        or known.

        Hashing, naming, compressing and encrypting happen in the upload pool, off the reading thread (hashlib,
        zstd and AES-GCM release the GIL on large buffers), so the SFTP read goes on meanwhile.
        """

        box = [data]     # the task's only reference: the plaintext is freed as soon as it is sealed, not after the PUT
        del data

        def upload() -> tuple[str, int]:
            chunk = box.pop()
            try:
                relative = snap.data_key(self.data_key.chunk_name(hashlib.sha256(chunk).digest()))
                mine: Future[int] | None = None
                with self.lock:
                    size = self.data_keys.get(relative)
                    other = self.sealing.get(relative) if size is None else None
                    if size is None and other is None:
                        mine = self.sealing[relative] = Future()
                if size is not None:
                    return relative, size
                if other is not None:          # the same chunk, being stored by another task: its size
                    return relative, other.result()
                assert mine is not None
                try:
                    body = self.data_key.seal(blob.DATA, chunk)
                    del chunk
                    self._put(relative, body, None)
                except BaseException as exc:
                    with self.lock:
                        self.sealing.pop(relative, None)
                    mine.set_exception(exc)
                    raise
                with self.lock:
                    self.data_keys[relative] = len(body)
                    self.sealing.pop(relative, None)
                mine.set_result(len(body))
                return relative, len(body)
            finally:
                self.budget.release(held)

        return self.pool.submit(upload)

    def wait(self) -> None:
        """Every upload submitted so far has finished; the first failure is raised."""
        while True:
            with self.lock:
                pending, self.futures = self.futures, []
            if not pending:
                return
            for fut in pending:
                fut.result()
