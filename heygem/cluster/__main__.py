"""The cluster's token, for the commands that start Ray by hand (README: "Many GPUs, many machines").

    python -m heygem.cluster env           # makes the token the first time; prints the `export` line for `ray start`
    python -m heygem.cluster env --join    # the same on a machine joining: the token must have been copied here
    python -m heygem.cluster env --lost-after 30   # Ray's health checks: a silent machine is lost after 30 s (15)
"""
from __future__ import annotations

import argparse
import shlex
import sys

from heygem.cluster import LOST_AFTER_SECONDS, RayUnavailableError, ray_environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heygem.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["env"], help="print the environment Ray needs for our token")
    parser.add_argument("--join", action="store_true", help="this machine joins a cluster: never make a new token")
    parser.add_argument("--lost-after", type=float, default=LOST_AFTER_SECONDS, metavar="SECONDS",
                        help="a machine that does not answer Ray's health checks for this long is declared dead "
                             "(read by `ray start --head`; default %(default)g)")
    args = parser.parse_args(argv)
    try:
        environment = ray_environment(create_token=not args.join, lost_after=args.lost_after)
    except (RayUnavailableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in environment.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
