"""``UserApi``: a request answered 401 is sent again, whole, after the access token is renewed.

The API is a real HTTP server (uvicorn on a loopback port) that refuses the first access token
and records what reaches it with the renewed one."""

from __future__ import annotations

import io
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, UploadFile

from runyard.console.gateway import Gateway, UserApi
from runyard.console.session import Session
from runyard.shared.testing.serving import serve


def api_refusing_the_old_token(received: list[bytes]) -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/auth/refresh")
    async def refresh() -> dict[str, Any]:
        return {"access_token": "new", "refresh_token": "r2", "expires_in": 900}

    @app.post("/api/v1/dataset-imports")
    async def upload(request: Request) -> JSONResponse:
        if request.headers["authorization"] != "Bearer new":
            return JSONResponse({"title": "Unauthorized", "status": 401}, status_code=401)
        file = (await request.form())["file"]
        assert isinstance(file, UploadFile)
        received.append(await file.read())
        return JSONResponse({"id": "job"}, status_code=202)

    return app


async def test_an_upload_refused_with_an_expired_token_is_sent_again_whole() -> None:
    received: list[bytes] = []
    content = b"epoch,loss\n" + b"1,0.5\n" * 20_000
    async with serve(api_refusing_the_old_token(received)) as url:
        gateway = Gateway(url, timeout_s=10)
        browser = Request({"type": "http", "headers": Headers().raw, "client": None})
        session = Session(
            access_token="old",
            refresh_token="r1",
            user_id="u",
            username="ada",
            role="user",
            access_expires_at=time.time() + 600,
        )
        try:
            upload = io.BytesIO(content)
            answer = await UserApi(gateway, browser, session).json(
                "POST",
                "/dataset-imports",
                data={"name": "d"},
                files={"file": ("d.csv", upload, "text/csv")},
            )
        finally:
            await gateway.close()
    assert answer == {"id": "job"}
    assert session.access_token == "new"
    assert received == [content]
