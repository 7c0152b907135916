"""Backups: the walk, the archiver, the repository format and its reader/writer, restorer, checker, names, capacity."""
