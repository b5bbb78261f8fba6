//! The reply to a registration request, XADDed to `<reply_prefix><fingerprint>`.
//!
//! Fields: `status` (`issued` | `pending` | `denied` | `invalid`), `detail` (a short reason
//! label), `nonce` (the request's, so the producer can match it) and, when issued,
//! `sealed_token` (standard base64 of a sealed box to the producer's key), `producer_id`,
//! `expires_at` (seconds since the epoch) and `kid`. A token never appears in clear.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Issued,
    Pending,
    Denied,
    Invalid,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Issued => "issued",
            Status::Pending => "pending",
            Status::Denied => "denied",
            Status::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "issued" => Status::Issued,
            "pending" => Status::Pending,
            "denied" => Status::Denied,
            "invalid" => Status::Invalid,
            _ => return None,
        })
    }
}

/// A token sealed to the producer's key, with what the producer needs to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedGrant {
    pub sealed_token: Vec<u8>,
    pub producer_id: Uuid,
    pub expires_at: i64,
    pub kid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub detail: String,
    pub nonce: Option<String>,
    pub grant: Option<SealedGrant>,
}

impl Reply {
    pub fn to_fields(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("status".to_string(), self.status.as_str().to_string()),
            ("detail".to_string(), self.detail.clone()),
        ];
        if let Some(n) = &self.nonce {
            f.push(("nonce".into(), n.clone()));
        }
        if let Some(g) = &self.grant {
            f.push(("sealed_token".into(), STANDARD.encode(&g.sealed_token)));
            f.push(("producer_id".into(), g.producer_id.to_string()));
            f.push(("expires_at".into(), g.expires_at.to_string()));
            f.push(("kid".into(), g.kid.clone()));
        }
        f
    }

    /// The reply as a JSON object of its fields (kept with the request's nonce, to resend it).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.to_fields()
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        )
    }

    /// Inverse of [`to_json`](Self::to_json); `None` when it is not a stored reply.
    pub fn from_json(v: &serde_json::Value) -> Option<Reply> {
        let fields: Vec<(String, Vec<u8>)> = v
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.as_bytes().to_vec())))
            .collect::<Option<_>>()?;
        Reply::from_fields(&fields)
    }

    /// Parse the fields of a reply entry; `None` when it is not a well-formed reply.
    pub fn from_fields(fields: &[(String, Vec<u8>)]) -> Option<Reply> {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let status = Status::parse(get("status")?)?;
        let grant = match get("sealed_token") {
            Some(t) => Some(SealedGrant {
                sealed_token: STANDARD.decode(t).ok()?,
                producer_id: get("producer_id")?.parse().ok()?,
                expires_at: get("expires_at")?.parse().ok()?,
                kid: get("kid")?.to_string(),
            }),
            None => None,
        };
        Some(Reply {
            status,
            detail: get("detail").unwrap_or_default().to_string(),
            nonce: get("nonce").map(str::to_string),
            grant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let r = Reply {
            status: Status::Issued,
            detail: "ok".into(),
            nonce: Some("n".into()),
            grant: Some(SealedGrant {
                sealed_token: vec![1, 2, 3],
                producer_id: Uuid::now_v7(),
                expires_at: 42,
                kid: "abcd".into(),
            }),
        };
        let f: Vec<(String, Vec<u8>)> = r
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        assert_eq!(Reply::from_fields(&f), Some(r.clone()));
        assert_eq!(Reply::from_json(&r.to_json()), Some(r));
        assert_eq!(Reply::from_json(&serde_json::json!({"status": 1})), None);
    }
}
