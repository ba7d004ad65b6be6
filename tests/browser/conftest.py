"""The browser test runs only when asked for (make test-browser sets GAPCAM_BROWSER_TEST=1):
`make test` and a plain `pytest` skip collecting it, since it needs Playwright, Chromium and a
few minutes."""

import os

if not os.environ.get("GAPCAM_BROWSER_TEST"):
    collect_ignore_glob = ["test_*.py"]
