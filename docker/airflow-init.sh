#!/bin/bash
# One-shot set-up for the compose stack: Airflow DB, the project DB and its migrations, connections.
set -euo pipefail
airflow db migrate
python - <<'PY'
import psycopg
with psycopg.connect("postgresql://airflow:airflow@postgres/airflow", autocommit=True) as c:
    if not c.execute("SELECT 1 FROM pg_database WHERE datname = 'cloudbackup'").fetchone():
        c.execute("CREATE DATABASE cloudbackup")
PY
cloudbackup db migrate
# The registry gate (stops here, naming file and field, on any error) and the per-server SFTP pools, as make up.
cloudbackup registry check
cloudbackup registry sync-pools
# The logins of the simple auth manager, from .env (compose refuses to start while one is empty).
python - <<'PY'
import json, os
path = "/opt/airflow/auth/passwords.json"
with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
    json.dump({user: os.environ[f"{user.upper()}_PASSWORD"] for user in ("admin", "operator", "finance")}, out)
PY
host_key="$(cut -d' ' -f1,2 /keys/ssh_host_ed25519_key.pub)"
for conn in sftp_demo_tanaka sftp_demo_globex; do
  airflow connections delete "$conn" >/dev/null 2>&1 || true
  airflow connections add "$conn" --conn-json "$(python -c '
import json, sys
print(json.dumps({"conn_type": "sftp", "host": "sftp-demo", "port": 22, "login": "root",
                  "extra": {"key_file": "/keys/client_ed25519", "host_key": sys.argv[1]}}))' "$host_key")"
done
echo "airflow-init done"
