"""`python -m server.healthcheck`: exit 0 when the local server answers /readyz with 200.

The container's HEALTHCHECK; standard library only (slim images have no curl). Reads the
port from ASL_PORT like the server does.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('ASL_PORT', '8000')}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=4) as r:
            return 0 if r.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
