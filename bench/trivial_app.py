"""The baseline for the read benchmark: one trivial Litestar endpoint, served like the API.

``python -m bench.trivial_app <port>`` runs it with the uvicorn settings ``membercore serve`` uses.
"""

from __future__ import annotations

import sys

import uvicorn
from litestar import Litestar, get


@get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


app = Litestar(route_handlers=[hello], logging_config=None, debug=False)


def main() -> None:
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
