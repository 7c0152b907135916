-- 0004: the notice outbox's delivery bookkeeping (art. 28: every notice is a record of what, to whom, when).
-- A delivery worker claims a notice (claim_token + claimed_until, a lease) before sending it and marks it
-- sent in its own transaction right after, so a retried task never sends it twice. A notice refused
-- max-attempts times is flagged stuck (stuck_at) for an operator instead of being retried forever.

ALTER TABLE notices ADD COLUMN language TEXT NOT NULL DEFAULT 'ja';
ALTER TABLE notices ADD COLUMN claim_token TEXT;
ALTER TABLE notices ADD COLUMN claimed_until {timestamp};
ALTER TABLE notices ADD COLUMN next_attempt_at {timestamp};
ALTER TABLE notices ADD COLUMN last_attempt_at {timestamp};
ALTER TABLE notices ADD COLUMN stuck_at {timestamp};

CREATE INDEX notices_customer_created ON notices (customer_id, created_at);
CREATE INDEX notices_stuck ON notices (stuck_at);
