"""The one Loki push client: where to push (base or full push URL), as whom (tenant,
basic or bearer auth, headers), over what (TLS with a private CA or a client
certificate), how long to wait; and what the answer means (`classify_push_answer`)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from sluiceway.wire import PushAnswer, base_url, classify_push_answer, push_url


@dataclass(frozen=True, slots=True)
class PushTarget:
    """A Loki-compatible server and how to reach it.

    `url` is the server's base URL (`http://host:3100`, a path prefix behind a proxy
    is kept) or the full push URL (`…/loki/api/v1/push`), as Promtail's `url` is.
    `basic` (user, password) and `bearer` are exclusive; `verify=False` skips TLS
    verification (`insecure_skip_verify`).
    """

    url: str
    tenant: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    basic: tuple[str, str] | None = None
    bearer: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.basic is not None and self.bearer:
            raise ValueError("use either basic auth or a bearer token, not both")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout!r}")

    @property
    def push_url(self) -> str:
        return push_url(self.url)

    @property
    def base_url(self) -> str:
        """Where the server's other endpoints (heartbeats) live."""
        return base_url(self.url)

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not (self.ca_file or self.cert_file) and self.verify:
            return True
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def http(self, timeout: float | None = None) -> httpx.Client:
        """An HTTP client with this target's tenant, credentials, headers and TLS: for
        pushes, and for heartbeats to the same server."""
        headers = dict(self.headers)
        if self.tenant:
            headers["X-Scope-OrgID"] = self.tenant
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        auth = httpx.BasicAuth(*self.basic) if self.basic is not None else None
        return httpx.Client(headers=headers, auth=auth, verify=self.ssl_context(),
                            timeout=self.timeout if timeout is None else timeout)


def unreachable(exc: Exception) -> PushAnswer:
    """A push that got no answer (refused, reset, timed out): retried like a 5xx, lost
    as `retries_exhausted` only if a retry limit gives up."""
    return PushAnswer("retry", 0, "retries_exhausted", f"{type(exc).__name__}: {exc}"[:300])


class PushClient:
    """Pushes bodies to one target and says what each answer means."""

    def __init__(self, target: PushTarget) -> None:
        self.target = target
        self.url = target.push_url
        self._http: httpx.Client | None = None

    def push(self, body: bytes, content_type: str,
             headers: dict[str, str] | None = None) -> PushAnswer:
        """One push; `headers` are this push's own (the ledger's numbers)."""
        if self._http is None:
            self._http = self.target.http()
        hdrs = {"Content-Type": content_type}
        if headers:
            hdrs.update(headers)
        try:
            resp = self._http.post(self.url, content=body, headers=hdrs)
        except httpx.HTTPError as exc:
            return unreachable(exc)
        return classify_push_answer(resp.status_code, resp.text, resp.headers)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def after_fork(self) -> None:
        self._http = None  # never share the parent's pooled sockets
