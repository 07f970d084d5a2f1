"""The HTTP contract's response models (OpenAPI), apart from the domain types in `core`."""
