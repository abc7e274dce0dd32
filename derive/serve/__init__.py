"""A local page to check a formula: `python -m derive serve` (needs the `serve` extra: starlette, uvicorn, pebble).

The page (derive.serve.app) takes a built-in or pasted spec, a notation and claims in
LaTeX or text, and shows each verdict with both sides typeset by KaTeX (vendored in
static/katex, MIT), the witness as a table, a matrix claim's wrong entries marked, the
nearest repair, and a link to the LaTeX document. Claims are read by derive.claims with
the limits of `derive check` and checked in worker processes under a time limit
(derive.serve.pool, derive.serve.work); the server binds to 127.0.0.1 unless told.
"""

from __future__ import annotations

HOST = "127.0.0.1"
PORT = 8000


def serve(host: str = HOST, port: int = PORT, processes: int = 2) -> None:
    """Run the page with uvicorn until interrupted."""
    import uvicorn

    from derive.serve.app import create_app

    uvicorn.run(create_app(processes), host=host, port=port, log_level="warning")
