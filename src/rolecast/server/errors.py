"""Errors in the shape OpenAI's API gives them, so every client shows them as it should."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers = headers  # sent with the response (Retry-After on a 429)

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.code}}
        merged = {**(self.headers or {}), **(headers or {})} or None
        return JSONResponse(body, status_code=self.status, headers=merged)
