"""A served model's life in a running service: which version each alias names, following a
promotion without a restart, a challenger beside the champion, and how the two compare."""
