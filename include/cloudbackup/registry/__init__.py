"""The operator's files: customers, plan catalog, operator settings, maintenance windows, backup settings."""
