"""Domain types every layer shares: the customer's features, model metadata, the errors."""
