"""``python -m sessionshare.balancer`` = ``sessionshare balancer`` (tests and benchmarks use it)."""

from sessionshare.cli.balancer_cmd import balancer_command

if __name__ == "__main__":
    balancer_command(prog_name="python -m sessionshare.balancer")
