"""The operations console: queries over the project's DB, HTML pages, and the FastAPI app Airflow mounts."""
