"""Which address the service may listen on, and which ``Host`` headers it answers.

Two holes closed here, both pure decisions so they are tested without a server:

* Listening beyond loopback without an API key hands the index (and delete) to the network, so
  :func:`check_bind` refuses it unless the operator says ``--insecure``.
* DNS rebinding: a web page on ``evil.example`` re-points its name at 127.0.0.1 and its script
  then talks to the service as a same-origin site, past any CORS rule. The browser still sends
  ``Host: evil.example``, so answering only Host names the service is really reached by
  (:class:`HostPolicy`) stops it. A rebinding always goes through a DNS *name*: IP literals and the
  loopback names cannot be produced by it.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
# A DNS name or an IP literal, after the port and IPv6 brackets are taken off.
_NAME_RE = re.compile(r"^[a-z0-9_.:\-]{1,253}$")


class BindRefused(ValueError):
    """Listening on a non-loopback address without an API key (and without ``--insecure``)."""


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) is only reachable from this machine: ``localhost`` or a
    loopback IP. Other names count as not loopback: what they resolve to may change."""
    h = host.strip().strip("[]").lower().rstrip(".")
    if h == "localhost":
        return True
    ip = _ip(h)
    return ip is not None and ip.is_loopback


def check_bind(host: str, api_key: str, insecure: bool = False) -> None:
    """Refuse to listen beyond loopback without an API key, unless ``insecure`` (BindRefused)."""
    if api_key or insecure or is_loopback(host):
        return
    raise BindRefused(f"refusing to listen on {host or '0.0.0.0'} without an API key: anyone who reaches "
                      "it could search, browse and delete. Set ASTRADUP_API_KEY, or pass --insecure "
                      "to serve an open API on purpose")


def host_name(header: str | None) -> str | None:
    """The name of a ``Host`` header without its port, lowercased (None when it cannot be one)."""
    if header is None:
        return None
    h = header.strip().lower()
    if h.startswith("["):  # [v6]:port
        end = h.find("]")
        if end < 0 or (h[end + 1:] and not re.fullmatch(r":\d{1,5}", h[end + 1:])):
            return None
        name = h[1:end]
        return name if _ip(name) is not None and ":" in name else None
    name, sep, port = h.rpartition(":") if ":" in h else (h, "", "")
    if sep and not re.fullmatch(r"\d{1,5}", port):
        return None
    name = name.rstrip(".")
    return name if name and ":" not in name and _NAME_RE.match(name) else None


@dataclass(frozen=True)
class HostPolicy:
    """The ``Host`` names a gateway answers, from the address it listens on.

    Always the loopback names. Bound to loopback, nothing else. Bound to one address, that
    address too. Bound to every interface (0.0.0.0 / ::), any IP literal too (clients reach it by
    one of the machine's addresses, and a rebinding cannot send an IP literal). Plus
    ``allowed_hosts``: the DNS names clients use (``*`` turns the check off).
    """

    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()

    def allows(self, header: str | None) -> bool:
        name = host_name(header)
        if name is None:
            return False
        allowed = {h.strip().strip("[]").lower().rstrip(".") for h in self.allowed_hosts}
        if "*" in allowed or name in LOOPBACK_NAMES or name in allowed:
            return True
        bind = self.bind_host.strip().strip("[]").lower().rstrip(".")
        if is_loopback(bind):
            return False
        if bind in WILDCARD_BINDS:
            return _ip(name) is not None
        return name == bind

    def refusal(self, header: str | None) -> str:
        """The 400 message for a Host this policy does not answer."""
        shown = "(none)" if header is None else repr(header[:100])
        return (f"Host {shown} not allowed: this server answers {self.describe()} "
                "(add the name to ASTRADUP_ALLOWED_HOSTS to allow it)")

    def describe(self) -> str:
        names = ["localhost", "127.0.0.1", "[::1]"]
        bind = self.bind_host.strip().strip("[]").lower()
        if bind in WILDCARD_BINDS:
            names.append("any IP address")
        elif not is_loopback(bind):
            names.append(bind)
        names += [h for h in self.allowed_hosts if h]
        return ", ".join(names)
