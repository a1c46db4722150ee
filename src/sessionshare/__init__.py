"""sessionshare: shared HTTP sessions for load-balanced clusters of Python web apps."""
