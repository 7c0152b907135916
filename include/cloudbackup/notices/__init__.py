"""Notices to customers (art. 28): kinds, labels and templates (pure); the outbox, delivery and the sweep (DB, SMTP).

No re-exports: importing the pure modules (kinds, labels, templating) must not load the database or SMTP edges.
"""
