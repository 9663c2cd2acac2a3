"""The viewer's listening socket, bound before anything is printed: a host that does not resolve
or a port in use is one error line, never a "serving at" line followed by the error."""

from __future__ import annotations

import socket

from rapport.config.errors import RapportError

BACKLOG = 128


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) and listening, for aiohttp to serve on."""
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise RapportError(f"cannot listen on {host}:{port}: unknown host ({reason})") from None
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise RapportError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock
