#!/usr/bin/env bash
# Writes .env for `docker compose up` with fresh secrets: the Fernet key, the JWT secret shared by every
# Airflow component, the backup master key (wraps every customer's data key: keep a copy somewhere safe, a
# lost master key makes every backup unreadable), and the passwords of the three logins. Never overwrites an
# existing .env.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -e .env ]; then
  echo ".env exists; not touched (delete it to generate new secrets)" >&2
  exit 0
fi
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
umask 077
"$PY" - > .env <<'PYCODE'
import base64, os, secrets
print("# Secrets of the compose stack (scripts/compose-env.sh). Keep out of git; compose refuses empty values.")
print(f"FERNET_KEY={base64.urlsafe_b64encode(os.urandom(32)).decode()}")  # = Fernet.generate_key()
print(f"JWT_SECRET={secrets.token_urlsafe(32)}")
print(f"MASTER_KEY={base64.b64encode(os.urandom(32)).decode()}")
print(f"MASTER_KEY_ID=mk-{secrets.token_hex(4)}")
for user in ("ADMIN", "OPERATOR", "FINANCE"):
    print(f"{user}_PASSWORD={secrets.token_urlsafe(12)}")
PYCODE
echo "wrote .env: logins admin, operator, finance with the passwords in it"
