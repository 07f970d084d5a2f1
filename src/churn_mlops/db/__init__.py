"""Persistence: the async engine, the tables, repositories, migrations and seeding."""

from churn_mlops.db.engine import Database, DatabaseURLError, async_database_url
from churn_mlops.db.models import Base, Customer, Prediction
from churn_mlops.db.schema import SchemaNotCurrent, ensure_schema_current

__all__ = [
    "Base",
    "Customer",
    "Database",
    "DatabaseURLError",
    "Prediction",
    "SchemaNotCurrent",
    "async_database_url",
    "ensure_schema_current",
]
