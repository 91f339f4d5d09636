"""The two servers compared, started the same way: ``python -m bench.intake.servers
{intake|echo} PORT``. One uvicorn process, one worker, same settings for both."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from leadpact.service import PROCESS_HTTP


def echo_app() -> FastAPI:
    """A bare FastAPI endpoint that parses the JSON body and sends it back: the ceiling of
    what any FastAPI route can do on this machine."""
    app = FastAPI()

    @app.post("/v1/leads", status_code=202)
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    return app


def intake_app() -> FastAPI:
    from intake.app import SERVICE
    from leadpact.service import create_app

    return create_app(SERVICE)


def main(kind: str, port: int) -> None:
    app = intake_app() if kind == "intake" else echo_app()
    # The deployed intake's server settings (leadpact.service.serve), for both servers.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=PROCESS_HTTP,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
