"""Features, training, the versioned artifact and inference."""
