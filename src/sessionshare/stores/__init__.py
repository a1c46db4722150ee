"""Session stores: where session bytes live between requests.

``base.py`` declares the interface; each store is one module. ``create_store``
builds the store named by the ``store`` option.
"""

from sessionshare.stores.factory import create_async_store, create_store

__all__ = ["create_async_store", "create_store"]
