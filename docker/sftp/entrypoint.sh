#!/bin/sh
# Keys live in the shared `sftp-keys` volume so airflow-init can record the host key in the connection.
set -e
[ -f /keys/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /keys/ssh_host_ed25519_key
[ -f /keys/client_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f /keys/client_ed25519
cp /keys/client_ed25519.pub /keys/authorized_keys
chmod 644 /keys/client_ed25519 /keys/ssh_host_ed25519_key.pub
mkdir -p /sftp-root/srv/documents /sftp-root/srv/accounting /sftp-root/srv/projects
[ -f /sftp-root/srv/documents/welcome.txt ] || echo "demo file $(date -u)" > /sftp-root/srv/documents/welcome.txt
exec /usr/sbin/sshd -D -e
