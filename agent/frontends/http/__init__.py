"""The HTTP/1.1 frontend: OFREP, its SSE change stream and the probes, over the agent's Service.

Nothing is imported here: the settings read ``limits`` at every start, and an agent that serves
no HTTP never loads h11. The modules: ``address`` (addresses, binding, the loopback rule),
``limits``, ``server`` (``HttpServer``: h11 driven by Trio), ``connection``, ``routing``,
``routes`` (``build_router``: every path), ``ofrep``, ``sse``, ``probes``.

The composition root (``agent/assembly.py``, ``open_http_listeners``) wires it as::

    check_http_address(text, allow_remote=config.http_allow_remote)   # build_config: exit 2
    sock = bind_tcp(host, port)            # or host.listener.bind_unix(path, ...).sock
    server = HttpServer(build_router(service), sock, limits=HttpLimits(send_timeout=...),
                        connections=SharedConnectionLimit(service.stats, config.max_connections))
    await nursery.start(server.serve)
    ...
    server.shutdown(); store.close_subscribers(); await server.wait_connections_closed()
"""
