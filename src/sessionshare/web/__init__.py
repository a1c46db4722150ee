"""Web adapters: thin WSGI and ASGI middlewares over the sans-IO session core."""
