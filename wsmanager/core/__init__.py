"""What a stream is: its feed and delivery loop, sequence rules, state snapshots, targets, locks.

Pure or thread-light code with no sockets; :mod:`wsmanager.net` and :mod:`wsmanager.engine` build
on it.
"""
