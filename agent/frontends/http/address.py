"""Where the HTTP frontend listens: ``unix:PATH`` or ``HOST:PORT``, and whether that is allowed.

The agent answers anyone who can reach it, so a TCP address must be loopback (127.0.0.0/8, ::1,
``localhost``) unless the operator says otherwise: :func:`check_http_address` is what the daemon
calls before it binds anything, so a bad ``--http`` stops the start with a message, not a
half-started agent.
"""

from __future__ import annotations

import ipaddress
import socket

import attrs

__all__ = ["HttpAddress", "HttpAddressError", "parse_http_address", "check_http_address", "check_listening_socket",
           "bind_tcp"]


class HttpAddressError(ValueError):
    """An ``--http`` address that cannot be used; the message says why and what to do."""


@attrs.frozen
class HttpAddress:
    """A parsed ``--http`` value: a Unix socket path, or a TCP host and port (0: any free port)."""

    text: str
    path: str | None = None
    host: str | None = None
    port: int | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def url(self, bound_port: int | None = None) -> str:
        """The base URL a client would use (``http://host:port``; Unix sockets get ``http://localhost``)."""
        if self.path is not None:
            return "http://localhost"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{bound_port if bound_port is not None else self.port}"


def parse_http_address(text: str) -> HttpAddress:
    """Read ``unix:PATH``, ``HOST:PORT`` or ``[V6]:PORT``.

    Raises:
        HttpAddressError: the text is neither form, or the port is not 0-65535.
    """
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise HttpAddressError(f"--http {text!r}: give the socket path after 'unix:' (unix:/run/flagsock/http.sock)")
        return HttpAddress(text=text, path=path)
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise HttpAddressError(f"--http {text!r}: an IPv6 address is written [ADDRESS]:PORT, e.g. [::1]:8013")
        host, port_text = text[1:end], text[end + 2:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise HttpAddressError(
                f"--http {text!r}: expected unix:PATH or HOST:PORT (e.g. 127.0.0.1:8013 or unix:/run/flagsock/http.sock)"
            )
        if ":" in host:
            raise HttpAddressError(f"--http {text!r}: write an IPv6 address in brackets, e.g. [::1]:8013")
    if not host:
        raise HttpAddressError(
            f"--http {text!r}: name the host to listen on (127.0.0.1:PORT for this machine only)"
        )
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise HttpAddressError(f"--http {text!r}: the port must be a number from 0 to 65535, not {port_text!r}")
    return HttpAddress(text=text, host=host, port=int(port_text))


def is_loopback_host(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    if host == "localhost":
        return True
    try:
        return _is_loopback_ip(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(_is_loopback_ip(a) for a in addresses)


def _is_loopback_ip(text: str) -> bool:
    """Loopback, counting an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) by its IPv4 part."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def check_http_address(text: str, *, allow_remote: bool = False) -> HttpAddress:
    """Parse ``text`` and refuse a TCP host that is not loopback unless ``allow_remote``.

    Raises:
        HttpAddressError: unparsable, or a non-loopback host without ``allow_remote``; the daemon
            turns it into a start-up error (exit 2).
    """
    address = parse_http_address(text)
    if address.host is not None and not allow_remote and not is_loopback_host(address.host):
        raise HttpAddressError(
            f"--http {text!r}: {address.host} is not a loopback address, so the agent would answer other "
            "machines; listen on 127.0.0.1 or [::1], or pass --http-allow-remote if that is intended"
        )
    return address


def check_listening_socket(sock: socket.socket, where: str, *, allow_remote: bool = False) -> str:
    """Where an already listening socket (one systemd passed in) listens, as ``HOST:PORT`` or the
    Unix path; a TCP socket on an address that is not loopback is refused unless ``allow_remote``,
    as for ``--http``.

    Raises:
        HttpAddressError: the socket listens beyond loopback; ``where`` names it in the message.
    """
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return name if isinstance(name, str) and name else "an unnamed Unix socket"
    host, port = name[0], name[1]
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not allow_remote and not _is_loopback_ip(host):
        raise HttpAddressError(
            f"{where} listens on {shown}, which is not a loopback address, so the agent would answer other "
            "machines; use ListenStream=127.0.0.1:PORT (or [::1]:PORT) in the .socket unit, or pass "
            "--http-allow-remote if that is intended"
        )
    return shown


def bind_tcp(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: the kernel picks one).

    Resource handling: the caller owns and closes the returned socket.

    Raises:
        HttpAddressError: the host does not resolve or the address cannot be bound.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise HttpAddressError(f"--http {host}:{port}: cannot resolve {host!r}: {exc.strerror or exc}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise HttpAddressError(f"--http {host}:{port}: cannot listen: {exc.strerror or exc}") from None
    return sock
