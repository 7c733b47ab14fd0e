"""How to reach one etcd cluster: its endpoints, credentials, TLS files and deadlines."""

from __future__ import annotations

import ssl

import attrs

#: etcd's default ``--max-request-bytes``: a request (a whole transaction) over it is refused.
ETCD_MAX_REQUEST_BYTES = int(1.5 * 1024 * 1024)


@attrs.frozen
class EtcdSettings:
    """Everything the gateway needs, and nothing else.

    Attributes:
        endpoints: ``("host:port", ...)``, tried in turn.
        user, password: etcd credentials, both or neither.
        ca, cert, key: TLS files; any of them switches the endpoints to https.
        request_timeout: deadline (s) for one request to one endpoint, connect to last byte.
        connect_timeout: deadline (s) for the TCP (and TLS) connect alone.
        watch_idle_timeout: a watch stream silent for this long is treated as hung.
        max_request_bytes: the cluster's ``--max-request-bytes``; larger writes are refused
            before they are sent.
    """

    endpoints: tuple[str, ...]
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    request_timeout: float = 3.0
    connect_timeout: float = 1.0
    watch_idle_timeout: float = 30.0
    max_request_bytes: int = ETCD_MAX_REQUEST_BYTES

    def __attrs_post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("etcd needs at least one endpoint (HOST:PORT)")
        if (self.user is None) != (self.password is None):
            raise ValueError("etcd credentials need both a user and a password")
        if (self.cert is None) != (self.key is None):
            raise ValueError("an etcd client certificate needs both --etcd-cert and --etcd-key")

    @property
    def tls(self) -> bool:
        return any(f is not None for f in (self.ca, self.cert, self.key))

    def url(self, endpoint: str, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{endpoint}{path}"

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx takes as ``verify``: a context trusting ``ca`` and presenting ``cert``/``key``."""
        if not self.tls:
            return True
        context = ssl.create_default_context(cafile=self.ca)
        if self.cert is not None:
            context.load_cert_chain(self.cert, self.key)
        return context
