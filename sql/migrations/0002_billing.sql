-- 0002: invoices as qualified-invoice documents (terms art. 22–26; 適格請求書).
-- An issued document is never edited: a correction is a credit note plus a reissue (revision + 1).
-- Invoice numbers come from invoice_number_sequences, one row per issuer, inside the issuing transaction.
-- The 0001 tables are rebuilt (SQLite cannot drop a UNIQUE constraint); their rows are carried over.

ALTER TABLE invoice_lines RENAME TO invoice_lines_0001;
ALTER TABLE invoices RENAME TO invoices_0001;

CREATE TABLE invoices (
    id {id},
    customer_id TEXT NOT NULL,
    billing_month TEXT NOT NULL,            -- YYYY-MM, Asia/Tokyo calendar month
    document_type TEXT NOT NULL DEFAULT 'invoice',  -- invoice | credit_note
    revision INTEGER NOT NULL DEFAULT 0,    -- 0: first issue; n: n-th correction (its credit note and reissue)
    corrects_invoice_id BIGINT REFERENCES invoices (id),   -- credit note / reissue: the invoice corrected
    state TEXT NOT NULL,                    -- draft | issued
    invoice_number TEXT UNIQUE,             -- allocated at issue, per issuer, without gaps
    issuer_registration_number TEXT,        -- T + 13 digits, as on the issued document
    issuer_name TEXT,
    recipient_name TEXT NOT NULL DEFAULT '',
    sales_agent TEXT NOT NULL,
    subtotal BIGINT NOT NULL,               -- integer yen before tax
    tax BIGINT NOT NULL,                    -- sum over rates of floor(subtotal at rate × rate)
    total BIGINT NOT NULL,
    issue_date TEXT,                        -- YYYY-MM-DD, Asia/Tokyo
    payment_due_date TEXT,                  -- YYYY-MM-DD, from the sales agent's terms (art. 23)
    reason TEXT,                            -- why a correction was made
    created_at {timestamp} NOT NULL,
    issued_at {timestamp},
    UNIQUE (customer_id, billing_month, document_type, revision)
);

INSERT INTO invoices (customer_id, billing_month, state, invoice_number, sales_agent, subtotal, tax, total,
                      created_at, issued_at)
SELECT customer_id, billing_month, state, invoice_number, sales_agent, subtotal, tax, total, created_at, issued_at
FROM invoices_0001;

CREATE TABLE invoice_lines (
    id {id},
    invoice_id BIGINT NOT NULL REFERENCES invoices (id),
    line_no INTEGER NOT NULL,
    kind TEXT NOT NULL,                     -- monthly_fee | initial_fee | cancellation_penalty | credit
    description TEXT NOT NULL,
    description_en TEXT NOT NULL DEFAULT '',
    amount BIGINT NOT NULL,                 -- integer yen before tax (negative on a credit note)
    tax_rate TEXT NOT NULL,                 -- decimal as text, e.g. 0.10
    UNIQUE (invoice_id, line_no)
);

INSERT INTO invoice_lines (invoice_id, line_no, kind, description, amount, tax_rate)
SELECT n.id, l.line_no, l.kind, l.description, l.amount, l.tax_rate
FROM invoice_lines_0001 l
JOIN invoices_0001 o ON o.id = l.invoice_id
JOIN invoices n ON n.customer_id = o.customer_id AND n.billing_month = o.billing_month;

DROP TABLE invoice_lines_0001;
DROP TABLE invoices_0001;

CREATE INDEX invoices_month ON invoices (billing_month, state);

-- The qualified invoice's per-rate block, as issued.
CREATE TABLE invoice_tax_summaries (
    id {id},
    invoice_id BIGINT NOT NULL REFERENCES invoices (id),
    tax_rate TEXT NOT NULL,
    subtotal BIGINT NOT NULL,
    tax BIGINT NOT NULL,
    UNIQUE (invoice_id, tax_rate)
);

CREATE TABLE invoice_number_sequences (
    issuer_registration_number TEXT PRIMARY KEY,
    last_number BIGINT NOT NULL
);
