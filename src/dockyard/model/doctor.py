"""Host doctor results: one `CheckResult` per check, `DoctorReport` per host."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class CheckStatus(StrEnum):
    ok = "ok"
    warn = "warn"  # works, but will hurt (density, restarts, space)
    fail = "fail"  # broken now, or known to crash the host


class CheckResult(BaseModel):
    name: str
    status: CheckStatus
    message: str
    fix: str = ""  # what to run or change; empty when status is ok


class DoctorReport(BaseModel):
    host: str
    checks: list[CheckResult]

    @property
    def failed(self) -> bool:
        return any(c.status == CheckStatus.fail for c in self.checks)
