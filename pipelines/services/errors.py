"""The one error a service handler raises: answered as ``{"error": reason}`` with ``status``."""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers
