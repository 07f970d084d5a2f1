"""The churn-mlops benchmark harness: the servers it compares, the load it drives, the reports it
writes. Not part of the product: the `churn-mlops` wheel neither ships nor imports it; its extra
dependencies are the `bench` extra. Run `python -m benchmarks --help` from the repository root."""
