"""What ``nbp serve`` and ``nbp targets`` run (the CLI stays thin).

``nbp serve`` replaces its own process with ``bentoml serve
serving.service:NbpService`` (same PID, so SIGTERM to it stops the server), run
from the checkout with ``BENTOML_HOME`` inside the workspace and telemetry off.
``nbp targets`` builds the list with the very function ``POST /targets`` uses
(:meth:`serving.engine.Recommender.target_list`) and writes it with
:func:`serving.export.write_target_list`.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from pathlib import Path

from nbp import telemetry
from nbp.config import Config
from nbp.errors import ConfigError
from nbp.workspace import CHECKOUT, Workspace
from serving.auth import Tenancy, fingerprint_key, load_tokens
from serving.engine import Recommender
from serving.export import control_path, display_names, write_target_list

log = logging.getLogger(__name__)

SERVICE = "serving.service:NbpService"


def server_command(host: str, port: int) -> list[str]:
    """The ``bentoml serve`` command line of the service."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(CHECKOUT),
    ]


def server_env(ws: Workspace, config_path: str | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the server: the workspace, its BENTOML_HOME, the config overlay, telemetry off."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "NBP_HOME": str(ws.home),
            "BENTOML_HOME": str(ws.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "True",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "FEAST_USAGE": "False",
            # one request scores one row: OpenMP threads only add wake-up latency on a busy machine
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
        }
    )
    if config_path:
        env["NBP_CONFIG"] = str(Path(config_path).resolve())
    else:
        env.pop("NBP_CONFIG", None)
    return env


def check_port(host: str, port: int) -> None:
    """Refuse to start when ``host:port`` cannot be listened on (in use, or not an address here).

    BentoML would find out only after loading the service, with a traceback per process.

    Raises:
        ConfigError: the port is taken or the address cannot be bound; one line.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"nbp serve: cannot resolve host '{host}': {e.strerror}") from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no conflict
            try:
                s.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"nbp serve: port {port} on {host} is already in use; stop the other "
                        f"server or choose another --port"
                    ) from None
                raise ConfigError(f"nbp serve: cannot listen on {host}:{port}: {e.strerror}") from None


def exec_server(cfg: Config, ws: Workspace, host: str, port: int, config_path: str | None) -> None:
    """Check the tokens, the fingerprint key and the port, then become the BentoML server (never returns).

    A federation workspace is served whole: every member bank, each token limited to its bank.

    Raises:
        ConfigError: no tokens are configured, a token names no bank or a bank not served
            here (:func:`serving.auth.parse_tokens`), the key is bad, or the port is taken
            (all checked before the slow start).
    """
    telemetry.disable()
    tenancy = Tenancy.of(ws)
    key = fingerprint_key(ws, os.environ)  # also creates the key, before the workers
    load_tokens(cfg, os.environ, key=key, tenancy=tenancy)
    check_port(host, port)
    ws.bentoml_home.mkdir(parents=True, exist_ok=True)
    cmd = server_command(host, port)
    banks = f" (member banks: {tenancy})" if tenancy.federation else ""
    log.info("serving workspace %s%s on http://%s:%d (staff page /staff/)", ws.home, banks, host, port)
    os.chdir(CHECKOUT)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, server_env(ws, config_path))


def write_targets(
    cfg: Config,
    ws: Workspace,
    product: str,
    branch: str | None,
    manager: str | None,
    top: int,
    campaign: str | None,
    out: Path,
    rank_by: str = "propensity",
) -> str:
    """Build a target list like ``POST /targets`` and write it to ``out`` (.xlsx or .csv).

    ``ws`` is one bank's workspace (a member bank's, ``Workspace.for_bank``): the list, its
    file and the console line carry that bank.

    Returns:
        One line for the console.
    """
    rec = Recommender.load(cfg, ws)
    df = rec.target_list(product, branch, manager, top, campaign, rank_by=rank_by)
    names = {k: p.name_zh for k, p in cfg.products.items()}
    path = write_target_list(df, out, names, *display_names(ws))
    n_ctrl = int(df["control"].sum())
    where = f"{path} (control group: {control_path(path)})" if path.suffix.lower() == ".csv" else str(path)
    bank = f"bank {rec.bank}: " if rec.bank else ""
    again = f", the list issued {df.attrs['issued_at']} for these options" if df.attrs["reissued"] else ""
    note = f"\n  {df.attrs['rank_by_note']}" if df.attrs["rank_by_note"] else ""
    return (
        f"{bank}{len(df) - n_ctrl:,} customers to contact + {n_ctrl:,} control (campaign {df.attrs['campaign_id']}"
        f"{again}; ranked by {df.attrs['rank_by']}) written to {where}{note}"
    )
