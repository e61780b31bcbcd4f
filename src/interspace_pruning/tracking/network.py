"""Is a tracker's server there? A short probe before a tracker's client is opened.

A client that cannot reach its server retries for minutes (MLflow: 7 retries with
exponential backoff, 120 s per request; W&B: 90 s to start a run). :func:`probe` asks the
server for any answer at all within a few seconds, on a daemon thread the main thread
waits for with a timeout: a name that does not resolve, a port nobody listens on and a
server that accepts but never answers all end the wait in time, and a stop signal ends
it at once. A URL reached through a proxy (``HTTPS_PROXY``, ...) is not probed: the
client's own bounded requests decide.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import urllib.request
from urllib.parse import urlsplit

from .base import TrackerRefused, TrackerUnavailable


def probe(url: str, seconds: float, what: str) -> None:
    """:class:`TrackerUnavailable` unless the HTTP(S) server of ``url`` answers within
    ``seconds`` (``what`` names it in the message); other schemes are not probed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host or proxied(scheme, host):
        return
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise TrackerRefused(f"{what}: the URL's port is not a number from 0 to 65535") from None
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            answer(host, port, scheme == "https", seconds)
        except BaseException as e:  # noqa: BLE001 - reported to the waiting thread
            outcome.append(e)
        else:
            outcome.append(None)

    where = f"{what} at {host}:{port}"
    thread = threading.Thread(target=attempt, name="interspace-tracker-probe", daemon=True)
    thread.start()
    thread.join(seconds)  # a stop signal's exception ends the wait at once
    if not outcome or isinstance(outcome[0], TimeoutError):  # socket.timeout is one
        raise TrackerUnavailable(f"{where} did not answer within {seconds:g} s")
    if outcome[0] is not None:
        raise TrackerUnavailable(f"{where} cannot be reached ({reason(outcome[0])})")


def answer(host: str, port: int, tls: bool, seconds: float) -> None:
    """Connect, send ``HEAD /`` and wait for the first byte of any answer (an error page is
    an answer too: the server is there)."""
    deadline = time.monotonic() + seconds
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=seconds))
        if tls:
            # only whether something answers: nothing secret is sent, and the client
            # verifies the certificate itself when it connects
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = stack.enter_context(ctx.wrap_socket(sock, server_hostname=host))
        sock.settimeout(max(deadline - time.monotonic(), 0.05))
        name = f"[{host}]" if ":" in host else host
        sock.sendall(f"HEAD / HTTP/1.0\r\nHost: {name}\r\n\r\n".encode("ascii", "replace"))
        if not sock.recv(1):
            raise ConnectionError("the connection was closed without an answer")


def proxied(scheme: str, host: str) -> bool:
    """Whether the environment sends ``scheme`` requests to ``host`` through a proxy."""
    return bool(urllib.request.getproxies().get(scheme)) and not urllib.request.proxy_bypass(host)


def reason(e: BaseException) -> str:
    """One short line for ``e``."""
    if isinstance(e, TimeoutError):
        return "timed out"
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if isinstance(e, TrackerUnavailable) else f"{type(e).__name__}: {text}".rstrip(": ")
    return text[:300]
