"""Who may call the API and how much: bearer tokens, API keys, scopes, rate and size limits.

Nothing here imports `serving`: the app factory builds these objects from settings and hands
them to the fast path and the routes.
"""
