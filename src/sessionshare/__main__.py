"""``python -m sessionshare``: the same as the ``sessionshare`` command."""

from sessionshare.cli import main

main()
