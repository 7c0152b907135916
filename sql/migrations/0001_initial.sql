-- 0001: the project's own records (the Airflow metadata DB is not ours to write; see README).
-- Placeholders, expanded per dialect by cloudbackup.db.migrate:
--   {id}        surrogate primary key      {timestamp} instant, always UTC
-- Money columns are integer yen (BIGINT); byte counts are BIGINT.

CREATE TABLE backup_runs (
    id {id},
    customer_id TEXT NOT NULL,
    run_key TEXT NOT NULL,              -- Airflow run_id (or CLI run key); one row per run
    status TEXT NOT NULL,               -- running | succeeded | succeeded_with_errors | failed | skipped
    skip_reason TEXT,
    started_at {timestamp} NOT NULL,
    finished_at {timestamp},
    files_collected BIGINT NOT NULL DEFAULT 0,
    bytes_collected BIGINT NOT NULL DEFAULT 0,
    collection_error_count BIGINT NOT NULL DEFAULT 0,
    stored_bytes BIGINT,
    UNIQUE (customer_id, run_key)
);
CREATE INDEX backup_runs_customer_started ON backup_runs (customer_id, started_at);

CREATE TABLE collection_errors (
    id {id},
    backup_run_id BIGINT NOT NULL REFERENCES backup_runs (id),
    customer_id TEXT NOT NULL,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,               -- a short code: name_policy, permission_denied, vanished, ...
    detail TEXT,
    recorded_at {timestamp} NOT NULL
);
CREATE INDEX collection_errors_run ON collection_errors (backup_run_id);

CREATE TABLE capacity_events (
    id {id},
    customer_id TEXT NOT NULL,
    backup_run_id BIGINT REFERENCES backup_runs (id),
    threshold_percent INTEGER NOT NULL,
    stored_bytes BIGINT NOT NULL,
    contract_capacity_bytes BIGINT NOT NULL,
    recorded_at {timestamp} NOT NULL
);
CREATE INDEX capacity_events_customer ON capacity_events (customer_id, recorded_at);

CREATE TABLE invoices (
    id {id},
    customer_id TEXT NOT NULL,
    billing_month TEXT NOT NULL,        -- YYYY-MM, Asia/Tokyo calendar month
    state TEXT NOT NULL,                -- draft | issued
    invoice_number TEXT UNIQUE,         -- allocated at issue
    sales_agent TEXT NOT NULL,
    subtotal BIGINT NOT NULL,
    tax BIGINT NOT NULL,
    total BIGINT NOT NULL,
    created_at {timestamp} NOT NULL,
    issued_at {timestamp},
    UNIQUE (customer_id, billing_month)
);

CREATE TABLE invoice_lines (
    id {id},
    invoice_id BIGINT NOT NULL REFERENCES invoices (id),
    line_no INTEGER NOT NULL,
    kind TEXT NOT NULL,                 -- monthly_fee | initial_fee | cancellation_penalty
    description TEXT NOT NULL,
    amount BIGINT NOT NULL,
    tax_rate TEXT NOT NULL,             -- decimal as text, e.g. 0.10
    UNIQUE (invoice_id, line_no)
);

CREATE TABLE notices (
    id {id},
    kind TEXT NOT NULL,                 -- invoice | collection_errors | capacity | maintenance | suspension
    customer_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL UNIQUE,
    created_at {timestamp} NOT NULL,
    sent_at {timestamp},
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX notices_pending ON notices (sent_at, created_at);
