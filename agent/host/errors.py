"""The one kind of error that stops the agent before it serves: a bad setting or host state."""


class StartupError(Exception):
    """The agent cannot start as configured; the message is one line naming what and where.

    ``flagsock serve`` prints it and exits 2. Everything that can raise it runs before a socket
    is bound or a flag is loaded.
    """
