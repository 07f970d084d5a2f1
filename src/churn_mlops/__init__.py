"""churn-mlops: a fast customer-churn prediction service."""

from __future__ import annotations

__version__ = "0.1.0"
