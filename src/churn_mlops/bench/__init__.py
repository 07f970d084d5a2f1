"""`churn-mlops bench`: the servers it compares, the load it drives, the report it writes."""
