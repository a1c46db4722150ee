"""Example apps, one per framework, each a small real app with login, a cart and logout.

They share one contract (JSON in and out: /healthz, /me, /login, /cart, /logout) so the
same cluster test runs every one of them on two real server processes. Session store
options come from the ``SESSIONSHARE_*`` environment; with none set they use the memory
store.
"""
