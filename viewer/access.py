"""Who may read the viewer when it listens beyond loopback: requests for one of this machine's
names only (a page elsewhere that rebinds its name to our address sends its own name as Host),
and only with the access token, as Jupyter does: given once in the address printed at start,
then kept in a cookie, so a link the browser follows later needs no token in it.

On loopback neither applies beyond the loopback Host check the app already makes: the machine's
own users are trusted there, as before.
"""

from __future__ import annotations

import hmac
import secrets
import socket
from collections.abc import Iterable
from ipaddress import ip_address
from urllib.parse import urlencode

import msgspec
import psutil
from aiohttp import web

TOKEN_PARAMETER = "token"
TOKEN_COOKIE = "rapport_token"
TOKEN_BYTES = 24
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


class Access(msgspec.Struct, frozen=True):
    """The token every request needs, and the Host names it may name."""

    token: str
    hosts: frozenset[str]

    @classmethod
    def for_host(cls, host: str) -> Access:
        return cls(secrets.token_urlsafe(TOKEN_BYTES), machine_names(host))


def machine_names(host: str) -> frozenset[str]:
    """`host` itself, this machine's names, and, listening on every address, every address of
    its interfaces: the names a browser on the network may use to reach it."""
    names = {host, socket.gethostname(), socket.getfqdn(), *LOOPBACK_NAMES}
    if host in WILDCARDS:
        names.update(
            address.address.split("%", 1)[0]
            for addresses in psutil.net_if_addrs().values()
            for address in addresses
            if address.family in (socket.AF_INET, socket.AF_INET6)
        )
    return frozenset(_normal(name) for name in names if name)


def _normal(name: str) -> str:
    """Lower case, no brackets: `[::1]` and `::1` are one host."""
    return name.strip("[]").lower()


def host_name(host: str) -> str:
    """The Host header's name without its port, normalised as `machine_names` are."""
    if host.startswith("["):
        return _normal(host.split("]", 1)[0])
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return _normal(host)


def is_ip(name: str) -> bool:
    try:
        ip_address(name)
    except ValueError:
        return False
    return True


def refusal(request: web.Request, access: Access) -> tuple[int, str] | web.Response | None:
    """None when the request may go on; a (status, message) to answer with; or a redirect that
    moves a token from the address into the cookie."""
    if host_name(request.host) not in access.hosts:
        return 421, f"this viewer answers requests for {_listed(access.hosts)}, not {request.host}"
    offered = request.query.get(TOKEN_PARAMETER)
    if offered is not None:
        if not _same(offered, access.token):
            return 403, "wrong access token: use the address `rapport view` printed at start"
        rest = {k: v for k, v in request.query.items() if k != TOKEN_PARAMETER}
        target = request.path + (f"?{urlencode(rest)}" if rest else "")
        moved = web.Response(status=303, headers={"Location": target})
        moved.set_cookie(TOKEN_COOKIE, access.token, httponly=True, samesite="Strict", path="/")
        return moved
    if not _same(request.cookies.get(TOKEN_COOKIE, ""), access.token):
        return 403, (
            "this viewer needs its access token: open the address `rapport view` printed at "
            "start (it ends in ?token=…)"
        )
    return None


def _same(offered: str, token: str) -> bool:
    return hmac.compare_digest(offered.encode(), token.encode())


def _listed(hosts: Iterable[str]) -> str:
    named = sorted(name for name in hosts if not is_ip(name))
    return ", ".join(named) or "this machine"
