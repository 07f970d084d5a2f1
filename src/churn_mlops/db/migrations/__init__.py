"""Alembic migrations of the service's tables; run them with `churn-mlops db upgrade`."""
