"""Everything ``flagsock serve`` can be told, from the command line or a TOML file.

The TOML file uses the long option names (``max_connections`` or ``max-connections``); the
command line wins over the file. Unknown keys and wrong types are refused with the key named.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from agent.engine.limits import LOAD_TIMEOUT, MAX_BYTES, MAX_DEPTH, MAX_FLAGS, MAX_RULE_NODES, MIN_DEPTH, Limits
from agent.engine.rules.fractional import VERSIONS as FRACTIONAL_VERSIONS
from agent.frontends.http.limits import HttpLimits
from agent.host.errors import StartupError
from agent.sources.etcd.layout import SCHEME, EtcdLocation, LocationError
from agent.store.history import DEFAULT_HISTORY_MAX_BYTES
from agent.store.subscriptions import DEFAULT_SUBSCRIBER_QUEUE
from protocol.framing import DEFAULT_MAX_LINE_BYTES


class ConfigError(StartupError):
    """A setting is missing, unknown or out of range; the message names it."""


def _positive(inst: Any, attr: attrs.Attribute, value: float) -> None:
    if not value > 0:  # NaN too
        raise ConfigError(f"{attr.name.replace('_', '-')} must be greater than 0, not {value}")


def _at_least(low: int):
    def check(inst: Any, attr: attrs.Attribute, value: int) -> None:
        if value < low:
            raise ConfigError(f"{attr.name.replace('_', '-')} must be at least {low}, not {value}")

    return check


def _one_of(*choices: str):
    def check(inst: Any, attr: attrs.Attribute, value: str) -> None:
        if value not in choices:
            raise ConfigError(
                f"{attr.name.replace('_', '-')} must be one of {', '.join(choices)}, not {value!r}"
            )

    return check


#: The HTTP frontend's own defaults (sizes and deadlines), which the settings below start from.
_HTTP_DEFAULTS = HttpLimits()


@attrs.frozen
class ServeConfig:
    flags: tuple[str, ...] = ()
    socket: str | None = None
    socket_mode: int = 0o660
    socket_group: str | None = None
    max_connections: int = attrs.field(default=1024, validator=_positive)
    max_line_bytes: int = attrs.field(default=DEFAULT_MAX_LINE_BYTES, validator=_positive)
    fractional: str = attrs.field(default="v2", validator=_one_of(*FRACTIONAL_VERSIONS))
    invalid_flags: str = attrs.field(default="reject", validator=_one_of("reject", "isolate"))
    read_only: bool = False
    write_to: str | None = None
    allow_write: tuple[str, ...] = ()
    allow_write_group: tuple[str, ...] = ()
    log_format: str = attrs.field(default="auto", validator=_one_of("auto", "text", "journal", "json"))
    log_level: str = attrs.field(default="info", validator=_one_of("debug", "info", "warning", "error"))
    #: How long in-flight requests get to finish after SIGTERM.
    shutdown_timeout: float = attrs.field(default=3.0, validator=_positive)
    #: How long a send may wait on a client that does not read before it is disconnected.
    send_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: KEY=VALUE pairs added under every evaluation context (flagd's -X), the request winning.
    context_values: tuple[str, ...] = attrs.field(default=(), validator=lambda i, a, v: [parse_context_value(x) for x in v])
    #: Seconds between fetches of an HTTP(S) flag source.
    poll_interval: float = attrs.field(default=5.0, validator=_positive)
    #: Where what must outlive the process is kept (the last good version of remote sources).
    state_dir: str | None = attrs.field(factory=lambda: os.environ.get("STATE_DIRECTORY", "").split(":")[0] or None)
    #: Events a subscriber may leave unread before it is disconnected.
    subscriber_queue: int = attrs.field(default=DEFAULT_SUBSCRIBER_QUEUE, validator=_positive)
    #: The change history's bound, in bytes of its JSON lines; the oldest changes go first.
    history_max_bytes: int = attrs.field(default=DEFAULT_HISTORY_MAX_BYTES, validator=_positive)
    #: etcd sources (``--flags etcd://...``): credentials and TLS files.
    etcd_user: str | None = None
    etcd_password_file: str | None = None
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    #: HTTP listeners (``unix:PATH`` or ``HOST:PORT``): OFREP, its SSE stream and the probes.
    http: tuple[str, ...] = ()
    #: Allow an HTTP host that is not loopback.
    http_allow_remote: bool = False
    #: The largest HTTP request head (request line and headers), bytes; past it: 431.
    http_max_header_bytes: int = attrs.field(default=_HTTP_DEFAULTS.max_header_bytes, validator=_positive)
    #: The largest HTTP request body, bytes; past it: 413.
    http_max_body_bytes: int = attrs.field(default=_HTTP_DEFAULTS.max_body_bytes, validator=_positive)
    #: Seconds a client has to send a request head once it connected or started one; past it: 408.
    http_header_timeout: float = attrs.field(default=_HTTP_DEFAULTS.header_timeout, validator=_positive)
    #: Seconds a client has to send a request body; past it: 408.
    http_body_timeout: float = attrs.field(default=_HTTP_DEFAULTS.body_timeout, validator=_positive)
    #: Seconds a kept-alive HTTP connection may wait idle for its next request before it is closed.
    http_idle_timeout: float = attrs.field(default=_HTTP_DEFAULTS.idle_timeout, validator=_positive)
    #: The bounds of one flag document (see agent/engine/limits.py and docs/reliability.md).
    max_depth: int = attrs.field(default=MAX_DEPTH, validator=_at_least(MIN_DEPTH))
    max_file_bytes: int = attrs.field(default=MAX_BYTES, validator=_positive)
    max_flags: int = attrs.field(default=MAX_FLAGS, validator=_positive)
    max_rule_nodes: int = attrs.field(default=MAX_RULE_NODES, validator=_positive)
    #: Seconds a flag source may take to load before the load is abandoned as its error.
    load_timeout: float = attrs.field(default=LOAD_TIMEOUT, validator=_positive)

    @property
    def limits(self) -> Limits:
        return Limits(max_depth=self.max_depth, max_bytes=self.max_file_bytes, max_flags=self.max_flags,
                      max_rule_nodes=self.max_rule_nodes)


_FIELDS = {a.name: a for a in attrs.fields(ServeConfig)}
_TUPLES = {"flags", "allow_write", "allow_write_group", "context_values", "http"}
_INTS = {"max_connections", "max_line_bytes", "subscriber_queue", "history_max_bytes", "http_max_header_bytes",
         "http_max_body_bytes", "max_depth", "max_file_bytes", "max_flags", "max_rule_nodes"}
_FLOATS = {"shutdown_timeout", "send_timeout", "poll_interval", "http_header_timeout", "http_body_timeout",
           "http_idle_timeout", "load_timeout"}
_BOOLS = {"read_only", "http_allow_remote"}
_ETCD_FILES = ("etcd_password_file", "etcd_ca", "etcd_cert", "etcd_key")


def _check_etcd(config: "ServeConfig") -> None:
    for source in config.flags:
        if source.startswith(SCHEME):
            try:
                EtcdLocation.parse(source)
            except LocationError as exc:
                raise ConfigError(f"--flags {exc}") from None
    if (config.etcd_user is None) != (config.etcd_password_file is None):
        raise ConfigError("--etcd-user and --etcd-password-file go together (the password is read from the file)")
    if (config.etcd_cert is None) != (config.etcd_key is None):
        raise ConfigError("--etcd-cert and --etcd-key go together (the client certificate and its key)")


def parse_context_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--context-value``; ConfigError naming the setting otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"context-value must be KEY=VALUE, not {text!r}")
    return key.strip(), value


def is_remote(source: str) -> bool:
    """A ``--flags`` value naming a remote source (a URL) rather than a file."""
    return "://" in source


def parse_mode(text: str | int) -> int:
    """An octal permission like ``0660`` or ``660``."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise ConfigError(f"socket-mode must be an octal string like \"0660\", not {text!r}")
    try:
        mode = int(text, 8)
    except ValueError:
        raise ConfigError(f"socket-mode must be octal digits like 0660, not {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"socket-mode must be between 0000 and 0777, not {text}")
    return mode


def settings_from_toml(path: str) -> dict[str, Any]:
    """Read a TOML config file into ServeConfig keyword arguments, checking every key."""
    import tomllib  # here: most starts read no config file, and start-up time is measured
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    # Settings may sit at the top level or under a [serve] table.
    table = raw["serve"] if isinstance(raw.get("serve"), dict) else raw
    return _check_table(path, table)


def _check_table(path: str, table: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = os.path.dirname(os.path.abspath(path))
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            known = ", ".join(sorted(n.replace("_", "-") for n in _FIELDS))
            raise ConfigError(f"{path}: unknown setting {key!r}; known settings: {known}")
        where = f"{path}: {key}"
        if name in _TUPLES:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where} must be a string or a list of strings")
            if name == "flags":
                value = [v if is_remote(v) else os.path.join(base, v) for v in value]
            out[name] = tuple(value)
        elif name in _INTS:
            if type(value) is not int:
                raise ConfigError(f"{where} must be a whole number, not {value!r}")
            out[name] = value
        elif name in _FLOATS:
            if type(value) not in (int, float):
                raise ConfigError(f"{where} must be a number of seconds, not {value!r}")
            out[name] = float(value)
        elif name in _BOOLS:
            if type(value) is not bool:
                raise ConfigError(f"{where} must be true or false, not {value!r}")
            out[name] = value
        elif name == "socket_mode":
            out[name] = parse_mode(value)
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, not {value!r}")
            if name in ("socket", "write_to", "state_dir", *_ETCD_FILES) and not is_remote(value):
                value = os.path.join(base, value)
            out[name] = value
    return out


def build_config(file_settings: Mapping[str, Any], cli_settings: Mapping[str, Any]) -> ServeConfig:
    """Merge file and command-line settings (the command line wins) and validate them."""
    merged = dict(file_settings)
    merged.update({k: v for k, v in cli_settings.items() if v is not None})
    try:
        config = ServeConfig(**merged)
    except TypeError as exc:  # only reachable through a programming error in the CLI
        raise ConfigError(str(exc)) from None
    _check_etcd(config)
    from agent.frontends.http.address import HttpAddressError, check_http_address

    for address in config.http:
        try:
            check_http_address(address, allow_remote=config.http_allow_remote)
        except HttpAddressError as exc:
            raise ConfigError(str(exc)) from None
    if config.write_to and _absolute(config.write_to) not in {_absolute(p) for p in config.flags}:
        raise ConfigError(f"write-to {config.write_to} is not one of the flag files "
                          f"({', '.join(config.flags) or 'none given'}); it must name one of them")
    return config


def _absolute(source: str) -> str:
    return source if is_remote(source) else os.path.abspath(source)
