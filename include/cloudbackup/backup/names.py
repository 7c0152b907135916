"""File-name policy (art. 18(2)): which remote names are collected, and why the others are not."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class NamePolicy:
    """Operator-set rules for remote file names; a rejected name is a collection error, never silent."""

    require_utf8: bool = True
    reject_control_characters: bool = True
    max_name_bytes: int = 255          # one path segment, as most file systems allow
    max_path_bytes: int = 1024         # the whole remote path
    forbidden_characters: str = ""     # e.g. '\\:*?"<>|' for operators who restore onto Windows

    @classmethod
    def from_mapping(cls, data: dict | None) -> NamePolicy:
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"name_policy: unknown field(s) {sorted(unknown)}")
        return cls(**data)


def check_name(policy: NamePolicy, raw_name: bytes, raw_path: bytes) -> str | None:
    """Why `raw_name` (one segment, bytes as the server sent them) is refused, or None if it is collected."""
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError:
        if policy.require_utf8:
            return "name is not valid UTF-8"
        name = raw_name.decode("utf-8", "surrogateescape")
    if "/" in name or "\x00" in name or name in (".", ".."):
        return "name contains a path separator or is a relative segment"
    if policy.reject_control_characters and any(unicodedata.category(ch) == "Cc" for ch in name):
        return "name contains control characters"
    if len(raw_name) > policy.max_name_bytes:
        return f"name is longer than {policy.max_name_bytes} bytes"
    if len(raw_path) > policy.max_path_bytes:
        return f"path is longer than {policy.max_path_bytes} bytes"
    bad = sorted({ch for ch in name if ch in policy.forbidden_characters})
    if bad:
        return f"name contains forbidden characters {''.join(bad)!r}"
    return None


def printable(raw: bytes) -> str:
    """A path for records, logs and notices, one segment at a time: a segment that is not UTF-8 shows each
    non-ASCII byte as \\xNN (decoding the valid-looking parts of it would invent characters: a Shift_JIS name
    read as UTF-8 gains a Greek letter), control characters escaped."""
    return "/".join(_printable_segment(part) for part in raw.split(b"/"))


def _printable_segment(part: bytes) -> str:
    try:
        text = part.decode("utf-8")
    except UnicodeDecodeError:
        text = "".join(chr(b) if b < 0x80 else f"\\x{b:02x}" for b in part)
    return "".join(ch if unicodedata.category(ch) != "Cc" else ch.encode("unicode_escape").decode() for ch in text)
