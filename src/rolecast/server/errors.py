"""Errors in the shape OpenAI's API gives them, so every client shows them as it should."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

# an absolute path (/..., ~/..., C:\...) not inside a URL: what a response must never show
_PATH = re.compile(r"(?<![\w:/.~-])(?:~|[A-Za-z]:)?[/\\][^\s'\"(),;:]*")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers = headers  # sent with the response (Retry-After on a 429)
        self.param = param  # the request field at fault, as OpenAI names it

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }
        merged = {**(self.headers or {}), **(headers or {})} or None
        return JSONResponse(body, status_code=self.status, headers=merged)


def public(message: str) -> str:
    """``message`` with the server's paths taken out (``<path>``): an error's text may name
    files, and a client learns nothing about the server's disk."""
    for root in sorted({str(Path.home()), str(Path.cwd())}, key=len, reverse=True):
        if len(root) > 1:
            message = message.replace(root, "<path>")
    return _PATH.sub("<path>", message)


def internal(exc: BaseException, what: str) -> ApiError:
    """A 500 that says what failed, not why: the why (which may name server files) is logged
    under a reference the client can quote."""
    ref = uuid.uuid4().hex[:8]
    log.error("%s (ref %s): %s", what, ref, exc, exc_info=exc)
    return ApiError(500, f"{what}; the server's log says why (ref {ref})", "server_error")
