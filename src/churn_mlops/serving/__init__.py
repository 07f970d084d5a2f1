"""The HTTP service: app factory, routes, middleware."""
