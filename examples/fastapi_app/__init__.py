"""The FastAPI example: ``uvicorn examples.fastapi_app:app``.

A FastAPI app written as for Starlette's ``SessionMiddleware``, with the one import
changed to ``sessionshare.starlette``; run two of it behind a balancer and a user logged
in on one node is logged in on the other. See ``main.py``.
"""

from examples.fastapi_app.main import app

__all__ = ["app"]
