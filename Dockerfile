# Airflow image with the cloudbackup package, pinned to the project's constraints.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root constraints.txt pyproject.toml /opt/cloudbackup/
COPY --chown=airflow:root include /opt/cloudbackup/include
COPY --chown=airflow:root sql /opt/cloudbackup/sql
RUN pip install --no-cache-dir -c /opt/cloudbackup/constraints.txt /opt/cloudbackup
ENV CLOUDBACKUP_MIGRATIONS_DIR=/opt/cloudbackup/sql/migrations
# Mount points of the exports, restores and auth volumes: a new named volume takes this ownership, so the
# Airflow user (50000) can write there.
USER root
RUN mkdir -p /opt/airflow/exports /opt/airflow/restores /opt/airflow/auth \
    && chown -R airflow:root /opt/airflow/exports /opt/airflow/restores /opt/airflow/auth
USER airflow
