"""Connections run and handed over: the stream registry and its groups, the status feed and
the handover."""
