"""Customer data keys: made once per customer, stored only wrapped by a master key (customers/<id>/keys/), cached.

Callers never pass keys: readers and writers ask here by customer id, so code written for format-1
repositories works unchanged on format 2 (docs/storage-format.md, "Keys").
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloudbackup.backup import format as snap
from cloudbackup.backup.blob import DATA_KEY_SIZE, DataKey
from cloudbackup.clock import utcnow
from cloudbackup.edges import connections
from cloudbackup.edges.connections import MasterKey, MasterKeyMissing, MasterKeys
from cloudbackup.edges.s3 import ObjectStore

log = logging.getLogger(__name__)

KEY_FORMAT = "cloudbackup-key/1"

__all__ = ["KeyUnavailable", "MasterKeyMissing", "RotationResult", "data_key", "forget", "require", "rotate"]


class KeyUnavailable(RuntimeError):
    """The customer has a data key, but no configured master key unwraps it (lost, or not configured here)."""


_cache: dict[tuple[str, str], DataKey] = {}
_lock = threading.Lock()


def forget() -> None:
    """Drop the per-process cache of unwrapped data keys (tests that change the master key)."""
    with _lock:
        _cache.clear()


def _aad(customer_id: str, master_key_id: str) -> bytes:
    # Binds the wrapped key to its customer: a key file copied into another customer's prefix does not unwrap.
    return f"{KEY_FORMAT}\x00{customer_id}\x00{master_key_id}".encode()


def wrap(master: MasterKey, key: DataKey) -> bytes:
    """The key file: the data key sealed with AES-256-GCM under the master key, JSON."""
    nonce = os.urandom(12)
    wrapped = AESGCM(master.key).encrypt(nonce, key.secret, _aad(key.customer_id, master.key_id))
    return json.dumps({"format": KEY_FORMAT, "customer_id": key.customer_id, "master_key_id": master.key_id,
                       "algorithm": "AES-256-GCM", "nonce": base64.b64encode(nonce).decode(),
                       "wrapped_key": base64.b64encode(wrapped).decode(),
                       "created_at": utcnow().isoformat()}, indent=1).encode()


def unwrap(master: MasterKey, customer_id: str, doc: dict) -> DataKey:
    if doc.get("format") != KEY_FORMAT or doc.get("customer_id") != customer_id:
        raise KeyUnavailable(f"customer {customer_id!r}: key file is not a {KEY_FORMAT} of this customer")
    try:
        secret = AESGCM(master.key).decrypt(base64.b64decode(doc["nonce"]), base64.b64decode(doc["wrapped_key"]),
                                            _aad(customer_id, master.key_id))
    except InvalidTag:
        raise KeyUnavailable(f"customer {customer_id!r}: master key {master.key_id!r} does not unwrap its data key "
                             "(a different key under the same id, or a damaged key file)") from None
    if len(secret) != DATA_KEY_SIZE:
        raise KeyUnavailable(f"customer {customer_id!r}: unwrapped data key has the wrong size")
    return DataKey(customer_id, secret)


def _key_files(store: ObjectStore, customer_id: str) -> list[str]:
    prefix = snap.object_key(customer_id, snap.KEYS)
    return sorted(k for k, _ in store.list_keys(prefix + "/") if k.endswith(".json"))


def _unwrap_any(store: ObjectStore, customer_id: str, files: list[str], masters: MasterKeys) -> DataKey:
    needed: list[str] = []
    problems: list[str] = []
    for key in files:
        doc = json.loads(store.get_bytes(key))
        mk_id = str(doc.get("master_key_id"))
        needed.append(mk_id)
        master = masters.by_id(mk_id)
        if master is None:
            continue
        try:
            return unwrap(master, customer_id, doc)
        except KeyUnavailable as exc:
            problems.append(str(exc))
    have = [masters.current.key_id, *(k.key_id for k in masters.previous)]
    raise KeyUnavailable(
        f"customer {customer_id!r}: its data key is wrapped by master key {' or '.join(map(repr, needed))}, which "
        f"is not configured here (configured: {', '.join(map(repr, have))}); configure it as the current or a "
        "previous master key. Nothing was read or written." + (f" ({'; '.join(problems)})" if problems else ""))


def data_key(store: ObjectStore, customer_id: str, create: bool = False, fresh: bool = False) -> DataKey | None:
    """The customer's data key (cached per process); None for a customer without one (a format-1 repository)
    unless `create`, which makes one only when the customer has no key file at all — never over an existing one.

    Writers pass `fresh` (or `create`): the key files are listed even when the key is cached (one LIST per run),
    so a customer purged and backed up again within one process gets a new key file, never objects sealed under
    a key whose file is gone.
    """
    cached = _cache.get((store.bucket, customer_id))
    if cached is not None and not (create or fresh):
        return cached
    with _lock:
        files = _key_files(store, customer_id)
        if not files:
            _cache.pop((store.bucket, customer_id), None)
        cached = _cache.get((store.bucket, customer_id))
        if cached is not None:
            return cached
        if files:
            key = _unwrap_any(store, customer_id, files, connections.master_keys())
        elif not create:
            return None
        else:
            master = connections.master_keys().current     # raises MasterKeyMissing: never a plaintext fall-back
            key = DataKey(customer_id, os.urandom(DATA_KEY_SIZE))
            store.put_bytes(snap.object_key(customer_id, snap.key_file_key(master.key_id)), wrap(master, key))
            log.info("%s: new data key, wrapped by master key %r", customer_id, master.key_id)
        _cache[(store.bucket, customer_id)] = key
        return key


def require(store: ObjectStore, customer_id: str) -> DataKey:
    """The data key a sealed object needs; raises when the customer has none or it cannot be unwrapped."""
    key = data_key(store, customer_id)
    if key is None:
        raise KeyUnavailable(f"customer {customer_id!r}: an encrypted object was found but the customer has no "
                             f"key file under {snap.object_key(customer_id, snap.KEYS)}/")
    return key


@dataclass
class RotationResult:
    master_key_id: str
    rewrapped: list[str] = field(default_factory=list)       # customers whose key file was rewritten
    current: list[str] = field(default_factory=list)         # already wrapped by the current master key
    failed: dict[str, str] = field(default_factory=dict)     # customer → why (its key files are left as they were)


def customers_with_keys(store: ObjectStore) -> list[str]:
    return sorted(p.removeprefix("customers/").rstrip("/") for p in store.list_folders("customers/"))


def rotate(store: ObjectStore, customer_ids: list[str] | None = None) -> RotationResult:
    """Re-wrap every customer's data key under the current master key; no data object is read or rewritten.

    Per customer: unwrap with any configured key, PUT keys/<current id>.json, read it back and unwrap it, and only
    then delete the key files wrapped by older master keys. Interrupted at any point, at least one key file
    that a configured master key unwraps is left.
    """
    masters = connections.master_keys()
    current = masters.current
    result = RotationResult(current.key_id)
    for customer_id in customer_ids if customer_ids is not None else customers_with_keys(store):
        files = _key_files(store, customer_id)
        if not files:
            continue        # a format-1 repository that no format-2 run has touched yet: nothing to re-wrap
        mine = snap.object_key(customer_id, snap.key_file_key(current.key_id))
        try:
            key = _unwrap_any(store, customer_id, files, masters)
            if mine in files:
                try:
                    unwrap(current, customer_id, json.loads(store.get_bytes(mine)))
                    already = True
                except KeyUnavailable:
                    already = False
            else:
                already = False
            if not already:
                store.put_bytes(mine, wrap(current, key))
                if unwrap(current, customer_id, json.loads(store.get_bytes(mine))).secret != key.secret:
                    raise KeyUnavailable("the re-wrapped key file reads back differently")
            for old in files:
                if old != mine:
                    store.remove(old)
        except Exception as exc:  # noqa: BLE001 - one customer's failure is reported, the others go on
            result.failed[customer_id] = f"{type(exc).__name__}: {exc}"
            log.error("key rotation: %s: %s", customer_id, exc)
            continue
        (result.current if already else result.rewrapped).append(customer_id)
    log.info("key rotation to master key %r: %d re-wrapped, %d already current, %d failed", current.key_id,
             len(result.rewrapped), len(result.current), len(result.failed))
    return result
