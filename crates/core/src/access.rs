//! Who may do what: API keys, their roles, and the one function that decides.
//!
//! A key is `ait_<key id>_<secret>`: the key id (16 hex digits) is public and names the key
//! in listings and the access log; the secret (43 characters of base64url, 256 random
//! bits) is shown once and kept only as HMAC-SHA256 under the server's secret, compared in
//! constant time.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::ingest::FieldError;
use crate::query::Query;
use crate::record::Record;
use crate::value::TenantId;

/// What a key may do, in its tenant (or, for an admin key without a tenant, in all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Writes records for its tenant; reads nothing.
    Ingest,
    /// Reads its tenant's records (content only where the tenant's policy allows viewers).
    Viewer,
    /// Reads its tenant's records including content, exports and verifies.
    Auditor,
    /// Manages keys and policies (of its tenant, or of all tenants when global).
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Viewer, Role::Auditor, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role {s:?}: one of ingest, viewer, auditor, admin"))
    }
}

/// The public half of a key: 8 random bytes as 16 lower-case hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| KeyId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A whole key as a client presents it. Its secret never leaves this type but through
/// [`ApiKey::digest`] and [`ApiKey::reveal`] (once, when made).
pub struct ApiKey {
    id: KeyId,
    secret: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}, <secret>)", self.id)
    }
}

const SECRET_LEN: usize = 43; // 32 bytes of base64url without padding

impl ApiKey {
    /// A new key from 40 random bytes (8 for the id, 32 for the secret).
    pub fn generate(random: [u8; 40]) -> Self {
        let id = KeyId(hex::encode(&random[..8]));
        Self { id, secret: B64URL.encode(&random[8..]) }
    }

    /// `ait_<id>_<secret>`; `None` for anything else (which is then a 401).
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("ait_")?;
        let (id, secret) = rest.split_once('_')?;
        let ok = secret.len() == SECRET_LEN
            && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        Some(Self { id: KeyId::parse(id)?, secret: ok.then(|| secret.to_owned())? })
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// HMAC-SHA256(server secret, key id ‖ 0x00 ‖ secret), not yet finalised.
    fn mac(&self, server_secret: &[u8]) -> hmac::Hmac<Sha256> {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(server_secret)
            .expect("HMAC takes any key length");
        mac.update(self.id.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(self.secret.as_bytes());
        mac
    }

    /// What is stored of the key: its HMAC under the server's secret.
    pub fn digest(&self, server_secret: &[u8]) -> [u8; 32] {
        self.mac(server_secret).finalize().into_bytes().into()
    }

    /// Whether `stored` is this key's digest, compared in constant time.
    pub fn matches(&self, server_secret: &[u8], stored: &[u8]) -> bool {
        self.mac(server_secret).verify_slice(stored).is_ok()
    }

    /// The whole key, to show once to whoever made it.
    pub fn reveal(&self) -> String {
        format!("ait_{}_{}", self.id, self.secret)
    }
}

/// Who is asking: a key's id, role and tenant (`None`: a global admin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key_id: KeyId,
    pub role: Role,
    pub tenant: Option<TenantId>,
}

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Append records.
    Write,
    /// Read records, proofs and checkpoints.
    Read,
    /// Read record content (prompt, response, prompt variables).
    ReadContent,
    /// Export, verify, read the access log.
    Audit,
    /// Make and revoke keys; change policies.
    Administer,
}

/// Why a request is refused, by the status it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// 403: the role may not do this, or not in that tenant.
    Forbidden(String),
    /// 404: a tenant the key may not see, answered as if nothing were there.
    Hidden,
}

impl Principal {
    /// Whether this key may do `action` in `tenant` (`None`: across tenants, as a listing
    /// without tenant_id). A key bound to a tenant only ever acts in its own.
    pub fn may(&self, action: Action, tenant: Option<&TenantId>) -> Result<(), Denied> {
        let allowed = match (self.role, action) {
            (Role::Ingest, Action::Write) => true,
            (Role::Ingest, _) => false,
            (Role::Viewer, Action::Read) => true,
            (Role::Viewer, Action::ReadContent) => false, // unless the tenant's policy says so
            (Role::Auditor, Action::Read | Action::ReadContent | Action::Audit) => true,
            (Role::Admin, _) => true,
            (_, _) => false,
        };
        if !allowed {
            return Err(Denied::Forbidden(format!(
                "a key with role {} may not {}",
                self.role,
                action.verb()
            )));
        }
        match (&self.tenant, tenant) {
            (None, _) => Ok(()),
            (Some(own), Some(t)) if own == t => Ok(()),
            (Some(own), Some(t)) if action == Action::Write => {
                Err(Denied::Forbidden(format!("this key writes for tenant {own}, not {t}")))
            }
            (Some(_), Some(_)) => Err(Denied::Hidden),
            (Some(_), None) => Ok(()), // the caller narrows the request to the key's tenant
        }
    }
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Write => "write records",
            Action::Read => "read records",
            Action::ReadContent => "read record content",
            Action::Audit => "export, verify or read the access log",
            Action::Administer => "manage keys or policies",
        }
    }
}

/// Who acted: a key, through the API; or the operator, with the CLI on the store itself
/// (whoever can open the data dir or the database holds every power over it, so it has no
/// role to check, but what it changes is logged all the same).
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    Key(&'a Principal),
    Operator,
}

impl Actor<'_> {
    /// What the access log's `user_id` says: the key id, or `cli`.
    pub fn id(&self) -> &str {
        match self {
            Actor::Key(p) => p.key_id.as_str(),
            Actor::Operator => OPERATOR,
        }
    }

    /// What the access log's `agent_id` says: the key's role, or `operator`.
    pub fn role(&self) -> &'static str {
        match self {
            Actor::Key(p) => p.role.name(),
            Actor::Operator => "operator",
        }
    }
}

/// A change to keys, policies, holds or content, made through the API or offline: the
/// access log's name for it, and the status the API answers it with when it succeeds (an
/// offline change is logged with the same, so the two read alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    KeyCreate,
    KeyRevoke,
    PolicySet,
    Erasure,
    HoldAdd,
    HoldRemove,
}

impl Change {
    pub fn operation(self) -> &'static str {
        match self {
            Change::KeyCreate => "key.create",
            Change::KeyRevoke => "key.revoke",
            Change::PolicySet => "policy.set",
            Change::Erasure => "erasure",
            Change::HoldAdd => "hold.add",
            Change::HoldRemove => "hold.remove",
        }
    }

    /// 201 for what makes something new (a key, a hold), else 200.
    pub fn status(self) -> u16 {
        match self {
            Change::KeyCreate | Change::HoldAdd => 201,
            Change::KeyRevoke | Change::PolicySet | Change::Erasure | Change::HoldRemove => 200,
        }
    }
}

/// The `user_id` of what the operator did with the CLI on the store (in the access and the
/// system logs).
pub const OPERATOR: &str = "cli";

/// One access to the store, as a record of the access log (tenant `aitrail.access`):
/// who (`user_id`: the key id, or `cli`; `agent_id`: its role, or `operator`), what (`operation_type`, and
/// `feature_code`: the route), about which tenant (`session_id`; `*` for all), how many
/// records, the filters and the answer's status (under `attributes`).
#[derive(Clone, Debug)]
pub struct AccessEvent<'a> {
    pub actor: Actor<'a>,
    /// `read`, `verify`, `export`, `access-log.read`, `keys.list`, `key.create`, ...
    pub operation: &'a str,
    /// How: `GET /v1/records/{id}` (method and route template), or the CLI's command
    /// (`aitrail keys create`).
    pub route: &'a str,
    /// The tenant read or changed; `None` when across tenants.
    pub tenant: Option<&'a TenantId>,
    /// The request's query parameters, as sent.
    pub query: &'a [(String, String)],
    pub records: Option<u64>,
    pub status: u16,
}

impl AccessEvent<'_> {
    pub fn to_record(&self) -> Record {
        // A credential sent as a filter value would stay in a signed log for good: it is
        // kept redacted, as content is.
        let mut query = serde_json::Map::new();
        // A NUL (refused with 400, but logged) is kept as U+FFFD: no text of a record holds
        // NUL, and the event must be written whatever the request held.
        let loggable = |text: &str| crate::secrets::redact_text(text).0.replace('\0', "\u{FFFD}");
        for (k, v) in self.query {
            let values = query.entry(loggable(k)).or_insert_with(|| serde_json::json!([]));
            if let serde_json::Value::Array(a) = values {
                a.push(serde_json::Value::String(loggable(v)));
            }
        }
        let mut attributes = serde_json::json!({"status": self.status, "query": query});
        if let Some(n) = self.records {
            attributes["records"] = n.into();
        }
        let record = serde_json::json!({
            "tenant_id": TenantId::access_log(),
            "user_id": self.actor.id(),
            "agent_id": self.actor.role(),
            "operation_type": self.operation,
            "feature_code": self.route,
            "session_id": self.tenant.map_or("*", TenantId::as_str),
            "success": self.status < 400,
            "attributes": attributes,
        });
        serde_json::from_value(record).expect("an access event is a valid record")
    }
}

/// The listing query of the access log from request parameters: `tenant_id` names the
/// tenant accessed (the events' `session_id`), `key_id` the key (`user_id`), `operation`
/// the operation; the others are the listing's own (since, until, limit, cursor). A key
/// bound to a tenant (`scope`) sees the events about its tenant only.
pub fn access_log_query(
    pairs: &[(String, String)],
    scope: Option<&TenantId>,
) -> Result<Query, AccessLogRefusal> {
    let mut rest = Vec::new();
    let mut tenant = None;
    for (k, v) in pairs {
        match k.as_str() {
            "tenant_id" => tenant = Some(v.clone()),
            "key_id" => rest.push(("user_id".to_owned(), v.clone())),
            "operation" => rest.push(("operation_type".to_owned(), v.clone())),
            "since" | "until" | "limit" | "cursor" => rest.push((k.clone(), v.clone())),
            other => {
                return Err(AccessLogRefusal::BadQuery(FieldError::new(
                    other,
                    "unknown parameter: the access log takes tenant_id, key_id, operation, since, until, limit, cursor",
                )));
            }
        }
    }
    let tenant = match (scope, tenant) {
        (Some(own), Some(t)) if t != own.as_str() => return Err(AccessLogRefusal::Hidden),
        (Some(own), _) => Some(own.as_str().to_owned()),
        (None, t) => t,
    };
    if let Some(t) = tenant {
        rest.push(("session_id".to_owned(), t));
    }
    let mut query = Query::from_pairs(rest).map_err(AccessLogRefusal::BadQuery)?;
    query.tenant_id = Some(TenantId::access_log());
    Ok(query)
}

/// Why an access-log query is refused.
#[derive(Debug)]
pub enum AccessLogRefusal {
    BadQuery(FieldError),
    /// Another tenant's events: answered as nothing there.
    Hidden,
}

#[cfg(test)]
mod tests {
    /// A request's query can hold anything, NUL included: the event is still a record
    /// (this panicked: "an access event is a valid record").
    #[test]
    fn an_access_event_of_any_query_is_a_record() {
        let query = vec![
            ("model_name\0".to_owned(), "a\0b".to_owned()),
            ("tenant_id".to_owned(), "\0".to_owned()),
        ];
        let event = AccessEvent {
            actor: Actor::Operator,
            operation: "read",
            route: "GET /v1/records",
            tenant: None,
            query: &query,
            status: 400,
            records: None,
        };
        let record = event.to_record();
        let text = serde_json::to_string(&record.attributes).unwrap();
        assert!(text.contains("a\u{FFFD}b") && !text.contains("\\u0000"), "{text}");
    }

    use super::*;

    fn key(role: Role, tenant: Option<&str>) -> Principal {
        Principal {
            key_id: KeyId::parse("0123456789abcdef").unwrap(),
            role,
            tenant: tenant.map(|t| TenantId::parse(t).unwrap()),
        }
    }

    #[test]
    fn keys_round_trip_and_refuse_look_alikes() {
        let k = ApiKey::generate([7; 40]);
        let text = k.reveal();
        assert!(text.starts_with("ait_0707070707070707_"));
        let back = ApiKey::parse(&text).unwrap();
        assert_eq!(back.id(), k.id());
        assert!(back.matches(b"server", &k.digest(b"server")));
        assert!(!back.matches(b"other server", &k.digest(b"server")));
        for bad in [
            "",
            "ait_",
            &text[..text.len() - 1],
            &text.replace("ait_", "key_"),
            &format!("{text}x"),
            "ait_0707070707070707_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert!(ApiKey::parse(bad).is_none(), "{bad}");
        }
        let other = ApiKey::parse(&format!("{}A", &text[..text.len() - 1])).unwrap();
        assert!(!other.matches(b"server", &k.digest(b"server")), "one character off");
    }

    #[test]
    fn roles_by_action_and_tenant() {
        let t = TenantId::parse("t").unwrap();
        let u = TenantId::parse("u").unwrap();
        let ingest = key(Role::Ingest, Some("t"));
        assert_eq!(ingest.may(Action::Write, Some(&t)), Ok(()));
        assert!(matches!(ingest.may(Action::Write, Some(&u)), Err(Denied::Forbidden(_))));
        assert!(matches!(ingest.may(Action::Read, Some(&t)), Err(Denied::Forbidden(_))));
        let viewer = key(Role::Viewer, Some("t"));
        assert_eq!(viewer.may(Action::Read, Some(&t)), Ok(()));
        assert_eq!(viewer.may(Action::Read, Some(&u)), Err(Denied::Hidden));
        assert!(matches!(viewer.may(Action::ReadContent, Some(&t)), Err(Denied::Forbidden(_))));
        assert!(matches!(viewer.may(Action::Audit, Some(&t)), Err(Denied::Forbidden(_))));
        let auditor = key(Role::Auditor, Some("t"));
        assert_eq!(auditor.may(Action::Audit, Some(&t)), Ok(()));
        assert!(matches!(auditor.may(Action::Administer, Some(&t)), Err(Denied::Forbidden(_))));
        let admin = key(Role::Admin, Some("t"));
        assert_eq!(admin.may(Action::Administer, Some(&t)), Ok(()));
        assert_eq!(admin.may(Action::Read, Some(&u)), Err(Denied::Hidden));
        let global = key(Role::Admin, None);
        assert_eq!(global.may(Action::Read, Some(&u)), Ok(()));
        assert_eq!(global.may(Action::Write, Some(&u)), Ok(()));
    }
}
