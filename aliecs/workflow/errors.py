"""Errors of template processing: each names the file, the line when known, and the role path."""

from __future__ import annotations

from aliecs.errors import AliecsError


class TemplateError(AliecsError):
    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        line: int | None = None,
        role_path: str = "",
        column: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.role_path = role_path
        self.column = column
        where = file
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        parts = [p for p in (where, f"role {role_path}" if role_path else "") if p]
        super().__init__(f"{': '.join(parts)}: {message}" if parts else message)
