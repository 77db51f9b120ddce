"""Sockets and the wire: transport, proxies, the upgrade guard, websocket-client (only in
:mod:`wsmanager.net._wsclient`), the read loop, one connection's reader thread, the exchange's
rate limits and the error boundary."""
