"""The ``sessionshare`` command line (click)."""
