"""The HTTP service: app factory, one middleware chain, fast path, dependencies, routes."""
