"""Many workers, on many GPUs and machines, through Ray (optional: ``pip install -r requirements-ray.txt``).

The studio keeps its one database; ``RayBackend`` (heygem.cluster.ray_backend) hands its queued jobs, FIFO,
to worker actors that each own one device (heygem.cluster.worker). Nothing here imports Ray until ``connect``
is called, so the default, one process and one worker thread, never loads it.

Ray's control plane takes anyone who reaches its ports unless told otherwise: ``connect`` always runs it
with token authentication, the token made once at ``token_path()`` (outside the repository, mode 0600).

    python -m heygem.cluster env     # makes the token if there is none; prints the environment `ray start` needs
"""
from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["RayUnavailableError", "connect", "disconnect", "ensure_token", "ray_environment", "token_path"]

# Ray's own names (ray/_private/authentication): the mode, and the file its C++ side reads the token from.
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
TOKEN_ENV = "HEYGEM_RAY_TOKEN"  # where ours is kept, when not at the default place


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached; the message says what to do."""


def token_path() -> Path:
    """``$HEYGEM_RAY_TOKEN``, else ``~/.config/heygem/ray-token``: never inside the repository."""
    return Path(os.environ.get(TOKEN_ENV) or Path.home() / ".config" / "heygem" / "ray-token").expanduser()


def ensure_token(create: bool = True) -> Path:
    """The cluster's token file, made (256 random bits, readable by this user only) when missing and ``create``.
    A machine joining a cluster needs a copy of the head's file, not a new one: RayUnavailableError then."""
    path = token_path()
    if path.is_file():
        return path
    if not create:
        raise RayUnavailableError(
            f"no Ray token at {path}: copy the token file of the machine that runs `ray start --head` there "
            f"(or point {TOKEN_ENV} at it); every machine of one cluster uses the same token")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: two studios starting at once never write two different tokens.
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write(secrets.token_hex(32))
    log.info("made a new Ray token at %s", path)
    return path


def ray_environment(create_token: bool = True) -> dict[str, str]:
    """The environment Ray needs for token authentication with our token (also for `ray start` commands)."""
    return {AUTH_MODE_ENV: "token", AUTH_TOKEN_PATH_ENV: str(ensure_token(create_token))}


def connect(address: str, *, node_ip: str | None = None, workers: int | None = None,
            cpus: int | None = None) -> dict[str, Any]:
    """Start Ray on this machine (``address`` ``auto``) or join the cluster at ``address`` (``host:port`` of
    ``ray start --head``), with token authentication. ``node_ip``: the address this machine's Ray processes
    give the others (Ray's ``--node-ip-address``). ``cpus``: with ``auto``, the CPU slots this machine offers
    workers (default: its cores, and at least ``workers``). Returns Ray's address info."""
    starting = address == "auto"
    # Before Ray is imported: it reads its authentication mode once, when it loads.
    os.environ.update(ray_environment(create_token=starting))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports about this cluster leave the machine
    loaded = "ray" in sys.modules
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--ray needs Ray: ./start_app.sh --ray ... installs it (requirements-ray.txt), "
                                  "or .venv/bin/pip install -r requirements-ray.txt") from None
    if loaded:  # imported earlier (a test, say): make it read the mode and token again, as `ray.init` itself would
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
        from ray._raylet import AuthenticationTokenLoader

        _enable_token_auth()
        AuthenticationTokenLoader.instance().reset_cache()
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if node_ip:
        options["_node_ip_address"] = node_ip
    if starting:
        # Enough CPU slots for the workers asked for; GPUs are found by Ray itself.
        options["num_cpus"] = cpus or max(os.cpu_count() or 1, workers or 1)
    try:
        context = ray.init(address="local" if starting else address, **options)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, AuthenticationError, ... here
        raise RayUnavailableError(f"cannot {'start' if starting else 'join'} Ray at {address}: {exc}") from exc
    log.info("Ray %s at %s (token authentication, token %s)", "started" if starting else "joined",
             context.address_info.get("gcs_address"), token_path())
    return dict(context.address_info)


def disconnect() -> None:
    """Leave Ray (and stop it when this process started it)."""
    if "ray" in sys.modules:
        import ray

        ray.shutdown()

