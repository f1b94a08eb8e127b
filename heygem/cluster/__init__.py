"""Many workers, on many GPUs and machines, through Ray (optional: ``pip install -r requirements-ray.txt``).

The studio keeps its one database; ``RayBackend`` (heygem.cluster.ray_backend) hands its queued jobs, FIFO,
to worker actors that each own one device (heygem.cluster.worker). Nothing here imports Ray until ``connect``
is called, so the default, one process and one worker thread, never loads it.

Ray's control plane takes anyone who reaches its ports unless told otherwise: ``connect`` always runs it
with token authentication, the token made once at ``token_path()`` (outside the repository, mode 0600).

    python -m heygem.cluster env     # makes the token if there is none; prints the environment `ray start` needs
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import secrets
import select
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

__all__ = ["LOST_AFTER_SECONDS", "RayUnavailableError", "code_version", "connect", "disconnect", "ensure_token",
           "health_check_config", "ray_environment", "token_path"]

# Ray's own names (ray/_private/authentication): the mode, and the file its C++ side reads the token from.
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
TOKEN_ENV = "HEYGEM_RAY_TOKEN"  # where ours is kept, when not at the default place
# A machine or worker silent this long is taken for lost and its job runs elsewhere (--ray-lost-after). Ray's
# own health check, left as it is, gives a frozen machine or a cut link about a minute (5 checks of 10 s + 3 s).
LOST_AFTER_SECONDS = 15.0
REAPER_READY_SECONDS = 30.0  # for the watcher of Ray's processes to start (a Python of its own)
_HEALTH_CHECK_PERIOD_MS = 1000
_HEALTH_CHECK_FAILURES = 3


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


def health_check_config(lost_after: float = LOST_AFTER_SECONDS) -> dict[str, int]:
    """Ray's health-check settings (its ``_system_config`` names) under which a machine that does not answer
    for about ``lost_after`` seconds is declared dead: a check every second, each given ``lost_after / 3``
    less that second, three failed in a row. They act in the head's control process (GCS)."""
    if lost_after < 3:
        raise ValueError(f"the time after which a machine is taken for lost must be 3 s or more (got {lost_after:g})")
    timeout_ms = int(lost_after * 1000 / _HEALTH_CHECK_FAILURES) - _HEALTH_CHECK_PERIOD_MS
    return {"health_check_period_ms": _HEALTH_CHECK_PERIOD_MS, "health_check_timeout_ms": max(500, timeout_ms),
            "health_check_failure_threshold": _HEALTH_CHECK_FAILURES}


def ray_environment(create_token: bool = True, lost_after: float = LOST_AFTER_SECONDS) -> dict[str, str]:
    """The environment Ray needs for token authentication with our token, and the health checks of
    ``health_check_config`` (``RAY_<name>``, read by `ray start --head`); also for `ray start` commands."""
    checks = {f"RAY_{name}": str(value) for name, value in health_check_config(lost_after).items()}
    return {AUTH_MODE_ENV: "token", AUTH_TOKEN_PATH_ENV: str(ensure_token(create_token)), **checks}


def code_version() -> str:
    """This machine's HeyGem, as the cluster compares it: a hash of the ``heygem`` package's Python files (their
    paths and contents), so two machines agree exactly when they run the same code, whether or not it is a git
    checkout and whatever its uncommitted changes. Worked out once per process (a plain function, so that Ray
    can run it on another machine: heygem.cluster.ray_backend)."""
    global _version
    if _version is None:
        package = Path(__file__).resolve().parents[1]
        digest = hashlib.sha256()
        for path in sorted(package.rglob("*.py")):
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        _version = digest.hexdigest()[:12]
    return _version


_version: str | None = None
_reaper: subprocess.Popen | None = None


def connect(address: str, *, node_ip: str | None = None, workers: int | None = None,
            cpus: int | None = None, lost_after: float = LOST_AFTER_SECONDS) -> dict[str, Any]:
    """Start Ray on this machine (``address`` ``auto``) or join the cluster at ``address`` (``host:port`` of
    ``ray start --head``), with token authentication. ``node_ip``: the address this machine's Ray processes
    give the others (Ray's ``--node-ip-address``). ``cpus``: with ``auto``, the CPU slots this machine offers
    workers (default: its cores, and at least ``workers``). ``lost_after``: with ``auto``, Ray's health checks
    declare a machine that stops answering dead after about this many seconds (``health_check_config``); a
    cluster started by hand takes them from `python -m heygem.cluster env`. Returns Ray's address info.

    Ray's processes started here end with this process, however it ends (a killed studio included)."""
    starting = address == "auto"
    # Found before anything is written: a machine without Ray gets no token.
    if importlib.util.find_spec("ray") is None:
        raise RayUnavailableError("Ray is not installed (it is optional): install it with "
                                  ".venv/bin/pip install -r requirements-ray.txt (start_app.sh does it the first time)")
    checks = health_check_config(lost_after)
    # Before Ray is imported: it reads its authentication mode once, when it loads.
    os.environ.update({AUTH_MODE_ENV: "token", AUTH_TOKEN_PATH_ENV: str(ensure_token(create=starting))})
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports about this cluster leave the machine
    loaded = "ray" in sys.modules
    try:
        import ray
    except ImportError as exc:  # installed, but broken
        raise RayUnavailableError(f"Ray cannot be loaded ({exc}): install it again with "
                                  ".venv/bin/pip install -r requirements-ray.txt") from exc

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
        options["_system_config"] = checks
    try:
        context = ray.init(address="local" if starting else address, **options)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, AuthenticationError, ... here
        raise RayUnavailableError(f"cannot {'start' if starting else 'join'} Ray at {address}: {exc}") from exc
    if starting:
        _start_reaper()
    log.info("Ray %s at %s (token authentication, token %s)", "started" if starting else "joined",
             context.address_info.get("gcs_address"), token_path())
    return dict(context.address_info)


def disconnect() -> None:
    """Leave Ray (and stop it when this process started it)."""
    if "ray" in sys.modules:
        import ray

        ray.shutdown()
    _stop_reaper()


def _start_reaper() -> None:
    """Ray's own processes do not all end with the process that started them: killed, a studio leaves two
    (its dashboard and runtime-env agents, Ray 2.60) running. A small process of its own session
    (heygem.cluster.reaper) ends them once this one is gone."""
    global _reaper
    _stop_reaper()
    _reaper = subprocess.Popen([sys.executable, "-m", "heygem.cluster.reaper", str(os.getpid())],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2],
                               start_new_session=True)
    # Until it has taken its first look at Ray's processes (a studio killed before that left them all running).
    if _reaper.stdout is not None and select.select([_reaper.stdout], [], [], REAPER_READY_SECONDS)[0]:
        _reaper.stdout.readline()
    else:
        log.warning("the watcher of Ray's processes did not answer within %.0f s", REAPER_READY_SECONDS)


def _stop_reaper() -> None:
    """Ray was stopped here as it should be: the reaper has nothing left to do."""
    global _reaper
    if _reaper is None:
        return
    stdin: IO[bytes] | None = _reaper.stdin
    try:
        if stdin is not None:
            stdin.write(b"stop\n")
            stdin.close()
        _reaper.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        _reaper.kill()
    _reaper = None
