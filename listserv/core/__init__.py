"""The pure core: values in, values out.

No database, sockets, clock, files or import-time side effects; `now`, secrets and randomness
come in as arguments (tests/test_purity.py checks it).
"""
