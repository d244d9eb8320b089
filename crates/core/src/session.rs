//! Dashboard sessions: after signing in with an API key, the browser holds a session token
//! in an HttpOnly cookie instead of the key. The token names the key and an expiry and is
//! MACed with the server's secret, so any node sharing the log key can check it without a
//! session table; revoking the key ends its sessions. Requests that change anything must
//! also carry the session's CSRF token, which only the server can derive from the session.
//!
//! Token: `<key id>.<expires, Unix seconds>.<nonce, base64url>.<MAC, base64url>` with
//! MAC = HMAC-SHA256(secret, "aitrail.session.v1" ‖ 0x00 ‖ the first three parts).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{KeyInit, Mac};

use crate::access::KeyId;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How long a session lasts (capped by its key's own expiry).
pub const SESSION_SECONDS: i64 = 8 * 3600;

/// A session token that was made by this server and has not expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub key_id: KeyId,
    /// Unix seconds.
    pub expires: i64,
    token: String,
}

/// Why a presented session token is not a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    #[error("the session cookie is malformed or was not made by this server")]
    Invalid,
    #[error("the session has expired: sign in again")]
    Expired,
}

fn mac(secret: &[u8], label: &[u8], parts: &[&str]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
    mac.update(label);
    mac.update(b"\0");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(b".");
        }
        mac.update(part.as_bytes());
    }
    mac
}

impl Session {
    /// A new session for `key_id` until `expires` (Unix seconds); `nonce` makes each
    /// sign-in's token its own.
    pub fn mint(secret: &[u8], key_id: KeyId, expires: i64, nonce: [u8; 16]) -> Self {
        let (expires_text, nonce) = (expires.to_string(), B64URL.encode(nonce));
        let tag = mac(secret, b"aitrail.session.v1", &[key_id.as_str(), &expires_text, &nonce]);
        let tag = B64URL.encode(tag.finalize().into_bytes());
        let token = format!("{key_id}.{expires_text}.{nonce}.{tag}");
        Self { key_id, expires, token }
    }

    /// The session `token` stands for, if this server made it and it is live at `now`
    /// (Unix seconds). The MAC is compared in constant time.
    pub fn open(secret: &[u8], token: &str, now: i64) -> Result<Self, SessionRefusal> {
        let mut parts = token.split('.');
        let (Some(id), Some(expires_text), Some(nonce), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionRefusal::Invalid);
        };
        let key_id = KeyId::parse(id).ok_or(SessionRefusal::Invalid)?;
        let expires: i64 = expires_text.parse().map_err(|_| SessionRefusal::Invalid)?;
        let tag = B64URL.decode(tag).map_err(|_| SessionRefusal::Invalid)?;
        mac(secret, b"aitrail.session.v1", &[id, expires_text, nonce])
            .verify_slice(&tag)
            .map_err(|_| SessionRefusal::Invalid)?;
        if now >= expires {
            return Err(SessionRefusal::Expired);
        }
        Ok(Self { key_id, expires, token: token.to_owned() })
    }

    /// The token, for the cookie.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// This session's CSRF token: HMAC-SHA256(secret, "aitrail.csrf.v1" ‖ 0x00 ‖ token).
    pub fn csrf_token(&self, secret: &[u8]) -> String {
        B64URL.encode(mac(secret, b"aitrail.csrf.v1", &[&self.token]).finalize().into_bytes())
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, secret: &[u8], presented: &str) -> bool {
        let Ok(presented) = B64URL.decode(presented) else { return false };
        mac(secret, b"aitrail.csrf.v1", &[&self.token]).verify_slice(&presented).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> KeyId {
        KeyId::parse("0123456789abcdef").unwrap()
    }

    #[test]
    fn a_minted_session_opens_until_it_expires() {
        let s = Session::mint(b"secret", id(), 1_000, [7; 16]);
        let opened = Session::open(b"secret", s.token(), 999).unwrap();
        assert_eq!(opened, s);
        assert_eq!(Session::open(b"secret", s.token(), 1_000), Err(SessionRefusal::Expired));
        assert_eq!(Session::open(b"other", s.token(), 0), Err(SessionRefusal::Invalid));
    }

    #[test]
    fn any_change_to_the_token_is_refused() {
        let token = Session::mint(b"secret", id(), 5_000, [1; 16]).token().to_owned();
        let later = token.replacen(".5000.", ".9000.", 1);
        let other_key = token.replacen("0123456789abcdef", "0123456789abcdee", 1);
        for bad in ["", "a.b.c.d", &later, &other_key, &format!("{token}.x"), &token[1..]] {
            assert_eq!(Session::open(b"secret", bad, 0), Err(SessionRefusal::Invalid), "{bad}");
        }
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let a = Session::mint(b"secret", id(), 5_000, [1; 16]);
        let b = Session::mint(b"secret", id(), 5_000, [2; 16]);
        assert!(a.csrf_matches(b"secret", &a.csrf_token(b"secret")));
        assert!(!a.csrf_matches(b"secret", &b.csrf_token(b"secret")));
        assert!(!a.csrf_matches(b"other", &a.csrf_token(b"secret")));
        assert!(!a.csrf_matches(b"secret", ""));
    }
}
