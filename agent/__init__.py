"""flagsock's daemon: load flag files, evaluate them like flagd, serve them on a Unix socket."""

__version__ = "0.1.0"
