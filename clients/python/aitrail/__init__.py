"""aitrail: record LLM calls in a tamper-evident audit trail, query and export them, and
verify a record yourself — its leaf hash, its inclusion proof and the checkpoint's
signature are checked here, in Python, against the log's public key (an implementation of
docs/FORMAT.md independent of the server's).

    from aitrail import AuditTrail, AuditConfig

    trail = AuditTrail(AuditConfig(url="http://127.0.0.1:8080", api_key="ait_…"))
    audit_id = trail.record(model_provider="anthropic", model_name="claude-sonnet-4",
                            prompt="…", response="…", temperature=0.7)
    records = trail.query(start_date="2025-12-01", model="claude-sonnet-4")
    trail.export(audit_ids=[audit_id], format="json", output="compliance-report.json")
    assert trail.verify(audit_id=audit_id)
"""

from ._client import AuditConfig, AuditError, AuditTrail
from ._verify import Verification, loads, verify_record

__all__ = ["AuditConfig", "AuditError", "AuditTrail", "Verification", "loads", "verify_record"]
