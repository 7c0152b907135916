"""Thin adapters to the outside: SFTP (paramiko), S3 (minio), SMTP (smtplib), the project's DB, Airflow connections.

They know nothing of customers, snapshots or invoices; the domain packages call them.
"""
