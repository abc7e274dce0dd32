"""A local page to check a formula: `python -m derive serve` (needs the `serve` extra: starlette, uvicorn, pebble).

The page (derive.serve.app) takes a built-in or pasted spec, a notation and claims in
LaTeX or text, and shows each verdict with both sides typeset by KaTeX (vendored in
static/katex, MIT), the witness as a table, a matrix claim's wrong entries marked, the
nearest repair, and a link to the LaTeX document. Claims are read by derive.claims with
the limits of `derive check` and checked in worker processes under a time limit
(derive.serve.pool, derive.serve.work); the server binds to 127.0.0.1 unless told.
"""

from __future__ import annotations

import sys

HOST = "127.0.0.1"
PORT = 8000


def serve(host: str = HOST, port: int = PORT, processes: int = 2) -> None:
    """Run the page with uvicorn until interrupted; DeriveError when the address cannot be listened on."""
    import socket

    import uvicorn

    from derive.errors import DeriveError

    try:  # uvicorn would log the bind error and exit; say it in one line, with what to do
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise DeriveError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port, "
                          "or a --host of this machine") from None
    print(f"serving on http://{host}:{port}/ (Ctrl-C stops it)", file=sys.stderr)

    from derive.serve.app import create_app

    uvicorn.run(create_app(processes), host=host, port=port, log_level="warning")
