//! Validate: judges a kernel and its inputs before anything is written. A kernel that
//! cannot run as specified until the user acts is [`Blocked`] (a missing Secret, a config
//! the kernel would refuse); otherwise it is a [`ValidKernel`].

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::builders::{config, config_check};
use crate::controller::kernel::fetch::Inputs;
use crate::crd::kernel::SecretKeyRef;
use crate::crd::FdcKernel;

/// How often a blocked kernel is looked at again (a spec edit triggers a pass sooner).
pub const RETRY_BLOCKED: Duration = Duration::from_secs(30);

/// A kernel whose Secrets exist and whose rendered config the kernel's loader accepts.
#[derive(Debug, Clone, Copy)]
pub struct ValidKernel<'a> {
    pub kernel: &'a FdcKernel,
    /// `spec.auth.tokenTTL`: how long a retired issuer key stays trusted (plus a margin).
    pub token_ttl: Duration,
}

/// Why a kernel cannot run as specified: the condition reason and a message that says
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub reason: &'static str,
    pub message: String,
}

/// Judges `kernel` with its `inputs`.
pub fn validate<'a>(kernel: &'a FdcKernel, inputs: &Inputs) -> Result<ValidKernel<'a>, Blocked> {
    // 1. Secrets the pods read at start. Without them pods would sit in
    //    CreateContainerConfigError; say so on the FdcKernel instead.
    let ns = kernel.namespace().unwrap_or_default();
    let postgres = &kernel.spec.postgres.url_secret_ref;
    let mut missing = Vec::new();
    if let Some(problem) = secret_problem(inputs.postgres.as_ref(), postgres) {
        missing.push(format!("Postgres URL: {problem}"));
    }
    if let (Some(redis), Some(secret)) = (&kernel.spec.redis.url_secret_ref, &inputs.redis) {
        if let Some(problem) = secret_problem(secret.as_ref(), redis) {
            missing.push(format!("Redis URL: {problem}"));
        }
    }
    if !missing.is_empty() {
        return Err(Blocked {
            reason: "SecretMissing",
            message: format!(
                "{}. Create it, e.g. `kubectl -n {ns} create secret generic {} --from-literal={}=postgres://USER:PASS@HOST:5432/DB`; the operator retries every {}s",
                missing.join("; "),
                postgres.name,
                postgres.key,
                RETRY_BLOCKED.as_secs()
            ),
        });
    }

    // 2. The kernel's own config loader judges the config this spec renders to, before
    //    anything is written (no key rotation, no ConfigMap a restarting pod would read, no
    //    rollout). The issuer key ids only name files in auth.verify_keys, which the loader
    //    does not open, so a placeholder gives the same verdict as the real ids.
    let verdict = match config::render(kernel, &["key-id".to_string()]) {
        Ok(rendered) => config_check::check(&rendered).map_err(|e| e.to_string()),
        Err(e) => Err(format!("spec cannot be rendered: {e}")),
    };
    let token_ttl = verdict.and_then(|()| {
        kernel
            .token_ttl()
            .map_err(|e| format!("spec.auth.tokenTTL: {e}"))
    });
    match token_ttl {
        Ok(token_ttl) => Ok(ValidKernel { kernel, token_ttl }),
        Err(problem) => Err(Blocked {
            reason: "InvalidConfig",
            message: format!(
                "{problem}. Nothing was applied; the pods keep their current config. Fix the FdcKernel (the operator retries every {}s)",
                RETRY_BLOCKED.as_secs()
            ),
        }),
    }
}

/// `None` when `secret` exists and has `r`'s key; else what is wrong.
fn secret_problem(secret: Option<&Secret>, r: &SecretKeyRef) -> Option<String> {
    match secret {
        None => Some(format!("Secret {} not found", r.name)),
        Some(s) if !s.data.as_ref().is_some_and(|d| d.contains_key(&r.key)) => {
            Some(format!("Secret {} has no key {:?}", r.name, r.key))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;

    use super::*;
    use crate::controller::fixtures::{kernel, secret_with_key};
    use crate::crd::kernel::SecretKeyRef;

    fn secret(key: &str) -> Option<Secret> {
        Some(serde_json::from_value(secret_with_key("s", key)).unwrap())
    }

    #[test]
    fn a_valid_kernel_carries_its_token_ttl() {
        let k = kernel("k", 1);
        let inputs = Inputs {
            postgres: secret("url"),
            redis: None,
        };
        let valid = validate(&k, &inputs).expect("valid");
        assert_eq!(valid.token_ttl, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn every_missing_secret_is_named_in_one_message() {
        let mut k = kernel("k", 1);
        k.spec.redis.url_secret_ref = Some(SecretKeyRef {
            name: "redis".into(),
            key: "url".into(),
        });
        let inputs = Inputs {
            postgres: secret("uri"),
            redis: Some(None),
        };
        let blocked = validate(&k, &inputs).expect_err("blocked");
        assert_eq!(blocked.reason, "SecretMissing");
        assert!(
            blocked.message.starts_with(
                "Postgres URL: Secret pg has no key \"url\"; Redis URL: Secret redis not found."
            ),
            "{}",
            blocked.message
        );
    }
}
