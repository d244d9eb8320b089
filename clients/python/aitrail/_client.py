"""The HTTP client: standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from ._verify import Verification, loads, verify_record


class AuditError(Exception):
    """The server refused a request; `status` and the problem's `detail` say why."""

    def __init__(self, status: int, detail: str, problem: Optional[dict] = None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.problem = problem or {}


@dataclass
class AuditConfig:
    """Where the trail is and how records are sent.

    url, api_key: the aitrail server and a key (ingest to record; viewer or auditor to
        query; auditor to export).
    tenant_id: the tenant of recorded calls, when the key is not bound to one.
    enabled: when False, record() does nothing (returns None).
    include_prompts / include_outputs: when False, the prompt / response is left out of
        records before they leave this process (the tenant's policy applies on top).
    log_key: the log's verifier key (`name+id+key`), pinned: verify() trusts only it.
        Without it, verify() checks against the key the server itself gives
        (/v1/log-key), which proves only that the server agrees with itself: its "key
        pinned" step fails ("key not pinned: taken from the server"), so verify() is
        False, unless trust_server_key says to accept that key on purpose.
    trust_server_key: with no log_key, accept the server's own key (the step passes,
        still saying the key was not pinned).
    """

    url: str
    api_key: str
    tenant_id: Optional[str] = None
    enabled: bool = True
    include_prompts: bool = True
    include_outputs: bool = True
    log_key: Optional[str] = None
    trust_server_key: bool = False
    timeout: float = 30.0
    extra_headers: dict = field(default_factory=dict)


class AuditTrail:
    def __init__(self, config: AuditConfig):
        self.config = config
        self._base = config.url.rstrip("/")

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, body: Any = None, raw: bool = False):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.config.api_key}", **self.config.extra_headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self._base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as answer:
                payload = answer.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                problem = json.loads(text)
                detail = problem.get("detail") or problem.get("title") or text
            except ValueError:
                problem, detail = {}, text
            raise AuditError(e.code, detail, problem) from None
        if raw:
            return payload
        return json.loads(payload) if payload else None

    # ------------------------------------------------------------------ writing

    def record(self, record: Optional[dict] = None, **fields) -> Optional[str]:
        """Record one call (docs/RECORD.md fields, as a dict or keywords); returns its id."""
        if not self.config.enabled:
            return None
        body = {**(record or {}), **fields}
        if self.config.tenant_id and "tenant_id" not in body:
            body["tenant_id"] = self.config.tenant_id
        if not self.config.include_prompts:
            body.pop("prompt", None)
            body.pop("prompt_variables", None)
        if not self.config.include_outputs:
            body.pop("response", None)
        if isinstance(body.get("temperature"), float):
            body["temperature"] = repr(body["temperature"])  # the literal, not a binary float
        return self._request("POST", "/v1/records", body)["id"]

    # ------------------------------------------------------------------ reading

    def get(self, audit_id: str) -> dict:
        return self._request("GET", f"/v1/records/{urllib.parse.quote(audit_id)}")

    def query(self, start_date: Optional[str] = None, end_date: Optional[str] = None,
              model: Optional[str] = None, provider: Optional[str] = None,
              limit: Optional[int] = None, **filters) -> list:
        """Records, newest first, with the API's filters (start_date → since, end_date →
        until, model → model_name, provider → model_provider); every page unless `limit`."""
        params = dict(filters)
        for key, value in (("since", start_date), ("until", end_date), ("model_name", model), ("model_provider", provider)):
            if value is not None:
                params[key] = value
        params["limit"] = min(limit or 1000, 1000)
        out: list = []
        while True:
            page = self._request("GET", "/v1/records?" + urllib.parse.urlencode(params, doseq=True))
            out.extend(page["records"])
            if page.get("next_cursor") is None or (limit is not None and len(out) >= limit):
                return out[:limit] if limit is not None else out
            params["cursor"] = page["next_cursor"]

    def export(self, audit_ids: Optional[Iterable[str]] = None, format: str = "json",
               output: Optional[str] = None, **filters) -> bytes:
        """A compliance export (zip, csv, json, jsonl) of these records or filters; written
        to `output` when given. Needs an auditor or admin key."""
        params: list = [("format", format)] + [("id", i) for i in (audit_ids or [])]
        params += sorted(filters.items())
        data = self._request("GET", "/v1/export?" + urllib.parse.urlencode(params), raw=True)
        if output:
            with open(output, "wb") as f:
                f.write(data)
        return data

    # ------------------------------------------------------------------ verifying

    def verification(self, audit_id: str) -> Verification:
        """Every check of verify(), with what each found."""
        quoted = urllib.parse.quote(audit_id)
        # Read with number literals kept: the entry compares them as written.
        record = loads(self._request("GET", f"/v1/records/{quoted}", raw=True))
        proof = self._request("GET", f"/v1/records/{quoted}/proof")
        if self.config.log_key:
            return verify_record(record, proof, self.config.log_key)
        # The server's own key: the bundle-key case of `aitrail verify --export`.
        key = self._request("GET", "/v1/log-key", raw=True).decode().strip()
        v = verify_record(record, proof, key)

        def pinned():
            if not self.config.trust_server_key:
                raise ValueError("key not pinned: taken from the server; pass log_key= "
                                 "(or trust_server_key=True to accept the server's own key)")
            return "key not pinned: taken from the server (trust_server_key=True)"

        v.check("key pinned", pinned)
        return v

    def verify(self, audit_id: str) -> bool:
        """Whether the record is, unaltered, in the log signed by the log key: checked here."""
        return self.verification(audit_id).ok
