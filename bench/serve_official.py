"""Serve an ASGI app (the official SDK's) on hypercorn, with exactly the settings
``FRAMEWORK_SERVER=hypercorn python -m framework serve`` uses for ours.

Run by the official venv's interpreter, with the repository on PYTHONPATH:
``python bench/serve_official.py bench.handlers:app --bind 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The official SDK's users serve it with hypercorn, not with our server (read at import).
os.environ["FRAMEWORK_SERVER"] = "hypercorn"

from framework._server.serve import serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", metavar="MODULE:APP")
    parser.add_argument("--bind", default="127.0.0.1:9080", metavar="HOST:PORT")
    args = parser.parse_args()
    serve(args.app, args.bind)


if __name__ == "__main__":
    main()
