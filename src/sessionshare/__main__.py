"""``python -m sessionshare``: the same as the ``sessionshare`` command."""

from sessionshare.cli.main import main

main()
