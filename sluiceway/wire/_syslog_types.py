"""The parsed form of one syslog message, shared by the RFC 5424 and RFC 3164 parsers."""

from __future__ import annotations

from dataclasses import dataclass, field

# RFC 5424 §6.2.1 severity codes as level names (the words Loki's level detection uses).
SEVERITY_LEVELS = ("emergency", "alert", "critical", "error", "warning", "notice", "info",
                   "debug")
FACILITY_NAMES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
                  "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
                  "local0", "local1", "local2", "local3", "local4", "local5", "local6",
                  "local7")

StructuredData = dict[str, dict[str, str]]


@dataclass(slots=True)
class SyslogMessage:
    """One message. Fields the sender left out (or sent as RFC 5424 NILVALUE "-") are
    None; `ts` is Unix ns or None when absent or unparseable (use the receive time)."""

    message: str
    format: str  # "rfc5424", "rfc3164", or "raw" when no syslog header was found
    facility: int | None = None
    severity: str | None = None
    ts: int | None = None
    hostname: str | None = None
    app_name: str | None = None
    procid: str | None = None
    msgid: str | None = None
    structured_data: StructuredData = field(default_factory=dict)

    @property
    def facility_name(self) -> str | None:
        return None if self.facility is None else FACILITY_NAMES[self.facility]
