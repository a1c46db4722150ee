"""The demo application of SPEC §6 (the test page of every Tomcat clustering guide).

``views.py`` holds what the pages do, once; ``asgi.py`` (Starlette, run by uvicorn)
and ``wsgi.py`` (Flask, run by gunicorn) only route requests to it.
"""
