"""The flagsock wire format: framing, messages and error codes, plus the stdlib-only client.

Nothing in this package performs I/O except ``client`` (a blocking socket) and
``openfeature`` (the provider built on the client). The framing core is shared by the daemon,
the tests and anyone writing another client.
"""
