"""The Binder session test runs only when asked for (make test-binder sets GAPCAM_BINDER_TEST=1):
`make test` and a plain `pytest` skip collecting it, since it needs root (a memory cgroup), a
Jupyter server and the whole series' time."""

import os

if not os.environ.get("GAPCAM_BINDER_TEST"):
    collect_ignore_glob = ["test_*.py"]
