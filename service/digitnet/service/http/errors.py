"""digitnet's errors as HTTP answers: the status each error class declares (contract/errors.py), mapped to
HTTP as Google's API design guide maps google.rpc.Code, in the protocol's body `{"error": "..."}`.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from digitnet.service.contract.errors import DigitnetError, StatusName

#: google.rpc.Code -> HTTP status (https://cloud.google.com/apis/design/errors#handling_errors).
HTTP_STATUS: dict[StatusName, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAUTHENTICATED": 401,
    "CANCELLED": 499,
    "DEADLINE_EXCEEDED": 504,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
}


def error_response(error: DigitnetError) -> JSONResponse:
    """The HTTP answer to an error: its status, `{"error": message}`, and the headers the status calls for."""
    status = HTTP_STATUS[error.code]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": str(error)}, status_code=status, headers=headers)
