"""HeyGem studio: the web UI and the HTTP API over one job queue.

    ./start_app.sh                      # http://127.0.0.1:7860
    ./start_app.sh --host 0.0.0.0 --auth admin:secret
    ./start_app.sh --ray auto --workers 2      # jobs run by Ray workers (README: "Many GPUs, many machines")
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

from pathlib import Path

from heygem.cli import add_limit_options, limits_from_args
from heygem.cluster import LOST_AFTER_SECONDS  # only names: heygem.cluster loads Ray in connect, not on import
from heygem.ending import run_to_the_end
from heygem.settings import OUTPUTS_DIR, EngineOptions, Settings

log = logging.getLogger("heygem.app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="Start the HeyGem studio (web UI and HTTP API).")
    parser.add_argument("--host", default=os.environ.get("HEYGEM_HOST", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HEYGEM_PORT", "7860")), help="port (default 7860)")
    parser.add_argument("--auth", default=os.environ.get("HEYGEM_AUTH"),
                        help="user:password required from every visitor (or set HEYGEM_AUTH); "
                             "needed when --host is not a loopback address")
    parser.add_argument("--allowed-hosts", metavar="NAMES", default=os.environ.get("HEYGEM_ALLOWED_HOSTS"),
                        help="more host names the studio answers to, comma-separated (or HEYGEM_ALLOWED_HOSTS), e.g. "
                             "a reverse proxy's public name; besides localhost, 127.0.0.1, ::1, any IP address, --host "
                             "and, on 0.0.0.0 or ::, this machine's names. Pages served under these names may use "
                             "the studio too")
    parser.add_argument("--trusted-proxies", metavar="ADDRESSES", default=os.environ.get("HEYGEM_TRUSTED_PROXIES"),
                        help="reverse proxies (addresses or networks, comma-separated; or HEYGEM_TRUSTED_PROXIES) "
                             "whose X-Forwarded-For names the client, for the password lockout; default none: the "
                             "connection's address")
    parser.add_argument("--engine", default="auto", choices=["auto", "wav2lip", "builtin"],
                        help="default engine of new jobs (auto: wav2lip when a checkpoint is in checkpoints/)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1")
    parser.add_argument("--outputs", type=Path, default=Path(os.environ.get("HEYGEM_OUTPUTS", OUTPUTS_DIR)),
                        help="the folder of the queue, uploads and results (default outputs/; or HEYGEM_OUTPUTS); "
                             "one studio at a time per folder")
    parser.add_argument("--ray", metavar="auto|ADDRESS",
                        help="run jobs on Ray workers, one per GPU (or per machine without GPUs): auto starts Ray on "
                             "this machine, ADDRESS (host:port of `ray start --head`) joins that cluster; "
                             "default: in this process, without Ray")
    parser.add_argument("--workers", type=int, metavar="N", help="with --ray: this many workers (default: one per GPU, "
                                                                   "or per machine)")
    parser.add_argument("--ray-node-ip", metavar="ADDRESS",
                        help="with --ray: the address this machine's Ray gives the other machines (Ray's "
                             "--node-ip-address; default: Ray's choice)")
    parser.add_argument("--ray-lost-after", type=float, metavar="SECONDS",
                        help="with --ray: a worker or machine that does not answer for this long (frozen, or its "
                             "link cut) is taken for lost and its job runs on another; with --ray auto, Ray's "
                             f"health checks are set to match (default {LOST_AFTER_SECONDS:g})")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the full log on the terminal")
    add_limit_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from heygem.logs import limits_words, log_dir_for, setup_logging
    from heygem.security import AllowedHosts, parse_hosts, parse_proxies
    from heygem.server import is_loopback, parse_credentials

    try:
        credentials = parse_credentials(args.auth)
    except ValueError as exc:
        print(f"error: --auth: {exc}", file=sys.stderr)
        return 2
    try:
        hosts = AllowedHosts.serving(args.host, parse_hosts(args.allowed_hosts))
    except ValueError as exc:
        print(f"error: --allowed-hosts: {exc}", file=sys.stderr)
        return 2
    try:
        proxies = parse_proxies(args.trusted_proxies)
    except ValueError as exc:
        print(f"error: --trusted-proxies: {exc}", file=sys.stderr)
        return 2
    try:
        limits = limits_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if (args.workers is not None or args.ray_node_ip or args.ray_lost_after is not None) and not args.ray:
        print("error: --workers, --ray-node-ip and --ray-lost-after go with --ray", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be 1 or more", file=sys.stderr)
        return 2
    if args.ray_lost_after is not None and args.ray_lost_after < 3:
        print("error: --ray-lost-after must be 3 seconds or more", file=sys.stderr)
        return 2
    if credentials is None and not is_loopback(args.host):
        print(f"error: listening on {args.host} would let anyone on the network in; "
              "give --auth user:password (or set HEYGEM_AUTH), or keep the default --host 127.0.0.1", file=sys.stderr)
        return 2
    with socket.socket() as probe:
        # As uvicorn binds: a port left in TIME_WAIT by the previous run is free to use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                  "is the studio already running? Choose another --port", file=sys.stderr)
            return 2

    args.outputs = args.outputs.resolve()
    # The log belongs to the outputs folder it describes (heygem.logs.log_dir_for): its studio's Logs tab shows it.
    log_file = setup_logging(log_dir_for(args.outputs), args.verbose)

    from heygem.engines import engine_status
    from heygem.jobs import FolderInUseError, JobQueue
    from heygem.pipeline import one_opencv_thread
    from heygem.server import create_app, serve

    if not args.ray:  # the jobs run in this process (Ray workers set their own threads)
        one_opencv_thread()

    defaults = Settings(engine=EngineOptions(engine=args.engine, device=args.device), limits=limits)
    defaults.detection.cache_dir = args.outputs / ".cache" / "faces"
    defaults.out_dir = args.outputs
    backend = None
    if args.ray:  # imported only here: without --ray, Ray is never loaded
        from heygem.cluster import RayUnavailableError, connect, disconnect

        lost_after = args.ray_lost_after or LOST_AFTER_SECONDS
        try:
            ray_address = connect(args.ray, node_ip=args.ray_node_ip, workers=args.workers,
                                  lost_after=lost_after)["gcs_address"]
        except RayUnavailableError as exc:
            print(f"error: --ray: {exc}", file=sys.stderr)
            return 2
        from heygem.cluster.ray_backend import RayBackend

        backend = RayBackend(args.workers, lost_after=lost_after)
    try:
        queue = JobQueue(args.outputs, defaults, backend=backend)
    except FolderInUseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = engine_status(defaults.engine)
    log.info("starting the studio: engine %s (checkpoint %s) on %s; outputs %s; limits %s; log %s", status["engine"],
             status["checkpoint"], status["device"], args.outputs, limits_words(limits), log_file)
    log.info("answering to host names %s; X-Forwarded-For trusted from %s", ", ".join(sorted(hosts.names)),
             ", ".join(proxies) or "no proxy")
    # The page shows results only from under the working directory (Gradio's rule for files that handlers
    # return), so run from the outputs folder wherever app.py was started from.
    os.chdir(args.outputs)
    app = create_app(queue, credentials, log_file=log_file, hosts=hosts, trusted_proxies=proxies)
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    where = f"Ray workers, cluster {ray_address}" if backend is not None else f"device: {status['device']}"
    print(f"HeyGem studio: http://{shown_host}:{args.port}/  (engine: {status['engine']}, {where}; "
          f"HTTP API: http://{shown_host}:{args.port}/api/ (README.md); log: {log_file}; Ctrl+C stops)", flush=True)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        serve(app, args.host, args.port)
    finally:
        queue.close(timeout=2)
        if backend is not None:
            disconnect()
    return 0


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, systemd, ``docker stop``) stops the studio as Ctrl+C does. uvicorn stops serving on
    it, then sends it again; Python's default would end the process there, before the queue is closed."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    run_to_the_end(main)
