"""What the local SeaweedFS enforces of S3 object lock, step by step (docs/object-lock.md).

Run `python tests/devtools/object_lock_probe.py`: it starts its own `weed mini` (as the tests do), runs each step
through the minio client and prints one line per step: `OK <step>: <result>` or `REFUSED <step>: <S3 error code>
<HTTP status>`. Stops the server at the end.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minio import Minio  # noqa: E402
from minio.commonconfig import COMPLIANCE, ENABLED, GOVERNANCE  # noqa: E402
from minio.deleteobjects import DeleteObject  # noqa: E402
from minio.error import S3Error  # noqa: E402
from minio.objectlockconfig import DAYS, ObjectLockConfig  # noqa: E402
from minio.retention import Retention  # noqa: E402
from minio.versioningconfig import SUSPENDED, VersioningConfig  # noqa: E402

from devtools import devstack  # noqa: E402


def step(name: str, action: Callable[[], object]) -> object:
    try:
        result = action()
    except S3Error as exc:
        print(f"REFUSED {name}: {exc.code} {exc.response.status if exc.response else ''}")
        return None
    shown = getattr(result, "version_id", result)
    print(f"OK      {name}: {shown!r}"[:160])
    return result


def _client(server: devstack.S3Server) -> Minio:
    return Minio(f"127.0.0.1:{server.port}", access_key=server.access_key, secret_key=server.secret_key,
                 secure=False, region="us-east-1")


def probe(m: Minio, filer_port: int) -> None:  # noqa: PLR0915 - one linear script, step by step
    b = "lockprobe"
    now = datetime.now(UTC).replace(microsecond=0)
    day = now + timedelta(days=1)

    def versions(prefix: str) -> list[tuple[str | None, bool]]:
        return [(o.version_id, bool(o.is_delete_marker))
                for o in m.list_objects(b, prefix=prefix, recursive=True, include_version=True)]

    print(f"weed: {subprocess.run([devstack._weed(), 'version'], capture_output=True, text=True).stdout.strip()}")
    step("make_bucket(object_lock=True)", lambda: m.make_bucket(b, object_lock=True))
    step("bucket versioning", lambda: m.get_bucket_versioning(b).status)
    step("suspend versioning of the lock bucket", lambda: m.set_bucket_versioning(b, VersioningConfig(SUSPENDED)))
    c1 = step("PUT c/obj with COMPLIANCE retention +1 day", lambda: m.put_object(
        b, "c/obj", io.BytesIO(b"v1"), 2, retention=Retention(COMPLIANCE, day)))
    v1 = getattr(c1, "version_id", None)
    step("GetObjectRetention c/obj", lambda: vars(m.get_object_retention(b, "c/obj")))
    step("DELETE c/obj without version id", lambda: m.remove_object(b, "c/obj"))
    step("versions of c/ (id, delete marker)", lambda: versions("c/"))
    step("DELETE c/obj version v1", lambda: m.remove_object(b, "c/obj", version_id=v1))
    step("DeleteObjects c/obj v1", lambda: [(e.code, e.message)
                                            for e in m.remove_objects(b, [DeleteObject("c/obj", v1)])])
    step("GET c/obj v1", lambda: m.get_object(b, "c/obj", version_id=v1).read())
    step("shorten COMPLIANCE retention to +1 hour", lambda: m.set_object_retention(
        b, "c/obj", Retention(COMPLIANCE, now + timedelta(hours=1)), version_id=v1))
    step("extend COMPLIANCE retention to +2 days", lambda: m.set_object_retention(
        b, "c/obj", Retention(COMPLIANCE, now + timedelta(days=2)), version_id=v1))
    step("COMPLIANCE -> GOVERNANCE", lambda: m.set_object_retention(
        b, "c/obj", Retention(GOVERNANCE, now + timedelta(days=3)), version_id=v1))
    step("PUT c/obj again (overwrite)", lambda: m.put_object(b, "c/obj", io.BytesIO(b"v2"), 2))
    step("versions of c/ after the overwrite", lambda: versions("c/"))
    step("GET c/obj v1 after the overwrite", lambda: m.get_object(b, "c/obj", version_id=v1).read())
    p = step("PUT p/obj without retention", lambda: m.put_object(b, "p/obj", io.BytesIO(b"p"), 1))
    pv = getattr(p, "version_id", None)
    step("PutObjectRetention COMPLIANCE on the existing p/obj", lambda: m.set_object_retention(
        b, "p/obj", Retention(COMPLIANCE, day), version_id=pv))
    step("DELETE p/obj version", lambda: m.remove_object(b, "p/obj", version_id=pv))
    g = step("PUT g/obj with GOVERNANCE retention +1 day", lambda: m.put_object(
        b, "g/obj", io.BytesIO(b"g"), 1, retention=Retention(GOVERNANCE, day)))
    gv = getattr(g, "version_id", None)
    step("DELETE g/obj version", lambda: m.remove_object(b, "g/obj", version_id=gv))
    step("shorten GOVERNANCE retention without bypass", lambda: m.set_object_retention(
        b, "g/obj", Retention(GOVERNANCE, now + timedelta(hours=1)), version_id=gv))
    step("DeleteObjects g/obj version with x-amz-bypass-governance-retention", lambda: [
        (e.code, e.message) for e in m.remove_objects(b, [DeleteObject("g/obj", gv)], bypass_governance_mode=True)])
    step("GET g/obj version", lambda: m.get_object(b, "g/obj", version_id=gv).read())
    h = step("PUT h/obj with legal hold", lambda: m.put_object(b, "h/obj", io.BytesIO(b"h"), 1, legal_hold=True))
    hv = getattr(h, "version_id", None)
    step("DELETE h/obj version (hold on)", lambda: m.remove_object(b, "h/obj", version_id=hv))
    step("legal hold off", lambda: m.disable_object_legal_hold(b, "h/obj", version_id=hv))
    step("DELETE h/obj version (hold off)", lambda: m.remove_object(b, "h/obj", version_id=hv))
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    s = step("PUT s/obj COMPLIANCE for 8 s", lambda: m.put_object(
        b, "s/obj", io.BytesIO(b"s"), 1, retention=Retention(COMPLIANCE, soon)))
    sv = getattr(s, "version_id", None)
    step("DELETE s/obj version before the date", lambda: m.remove_object(b, "s/obj", version_id=sv))
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 2)
    step("DELETE s/obj version after the date", lambda: m.remove_object(b, "s/obj", version_id=sv))
    step("default retention rule: GOVERNANCE 1 day", lambda: m.set_object_lock_config(
        b, ObjectLockConfig(GOVERNANCE, 1, DAYS)))
    d = step("PUT d/obj without retention (under the rule)", lambda: m.put_object(b, "d/obj", io.BytesIO(b"d"), 1))
    step("GetObjectRetention d/obj", lambda: vars(m.get_object_retention(b, "d/obj",
                                                                         version_id=getattr(d, "version_id", None))))
    step("remove_bucket (locked versions inside)", lambda: m.remove_bucket(b))
    step("make_bucket plain", lambda: m.make_bucket(b + "-plain"))
    step("PUT with retention into the plain bucket", lambda: m.put_object(
        b + "-plain", "x", io.BytesIO(b"x"), 1, retention=Retention(COMPLIANCE, day)))
    step("versioning on the plain bucket", lambda: m.set_bucket_versioning(b + "-plain", VersioningConfig(ENABLED)))
    step("PutObjectLockConfiguration on the now versioned bucket", lambda: m.set_object_lock_config(
        b + "-plain", ObjectLockConfig(COMPLIANCE, 1, DAYS)))
    # Behind the S3 gateway: the filer's own HTTP API, which `weed mini` serves on -filer.port.
    url = f"http://127.0.0.1:{filer_port}/buckets/{b}/c/obj.versions/v_{v1}"
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request) as resp:
        print(f"OK      filer HTTP DELETE of the COMPLIANCE-locked c/obj v1: HTTP {resp.status}")
    step("GET c/obj v1 through S3 after the filer DELETE", lambda: m.get_object(b, "c/obj", version_id=v1).read())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lockprobe-") as tmp:
        server = devstack.start_s3(Path(tmp) / "s3")
        try:
            args = [str(a) for a in server.proc.args] if server.proc else []   # type: ignore[union-attr]
            filer = int(next(a.split("=", 1)[1] for a in args if a.startswith("-filer.port=")))
            probe(_client(server), filer)
            # Do the locks survive a restart of the server?
            server.stop()
            server.proc = subprocess.Popen(args, stdout=(Path(tmp) / "restart.log").open("ab"),
                                           stderr=subprocess.STDOUT, cwd=Path(tmp) / "s3", start_new_session=True)
            m = _client(server)
            for _ in range(60):
                try:
                    found = [(o.object_name, o.version_id) for o in m.list_objects(
                        "lockprobe", prefix="p/", recursive=True, include_version=True)]
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(1)
            print("-- after a restart of weed mini")
            for name, version in found:
                step(f"DELETE {name} version (COMPLIANCE, +1 day)", lambda n=name, v=version: m.remove_object(
                    "lockprobe", n, version_id=v))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
