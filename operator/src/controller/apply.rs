//! The one Applier both controllers write through: server-side apply of desired objects,
//! create or replace of credentials (optimistic: they must fail on conflict instead of
//! overwriting), deletion of objects no longer wanted, and the Events that announce a
//! change. Every write names the object in its error.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::controller::{not_found_as_none, Context};
use crate::labels::FIELD_MANAGER;

/// A write failed; the pass stops and the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot {verb} {what}: {source}")]
    Write {
        verb: &'static str,
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// An Event about the reconciled object. `note` must not contain secrets (Events are
/// world-readable in the namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

impl Note {
    pub fn normal(reason: &'static str, action: &'static str, note: impl Into<String>) -> Self {
        Note {
            type_: EventType::Normal,
            reason,
            action,
            note: note.into(),
        }
    }

    pub fn warning(reason: &'static str, action: &'static str, note: impl Into<String>) -> Self {
        Note {
            type_: EventType::Warning,
            reason,
            action,
            note: note.into(),
        }
    }
}

/// A credential Secret to write, and the Events that announce it once written.
#[derive(Debug, Clone)]
pub struct SecretWrite {
    pub secret: Secret,
    /// Replace (guarded by the `resourceVersion` on `secret`) instead of create.
    pub replace: bool,
    pub notes: Vec<Note>,
}

/// Writes the objects of one reconciled object, in its namespace.
pub struct Applier<'a> {
    ctx: &'a Context,
    ns: String,
    regarding: ObjectReference,
}

impl<'a> Applier<'a> {
    /// An Applier for the objects of `owner` (its namespace; its Events).
    pub fn new<K: Resource<DynamicType = ()>>(ctx: &'a Context, owner: &K) -> Self {
        Applier {
            ctx,
            ns: owner.namespace().unwrap_or_default(),
            regarding: owner.object_ref(&()),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    fn what<K: Resource<DynamicType = ()>>(&self, name: &str) -> String {
        format!("{} {}/{name}", K::kind(&()), self.ns)
    }

    /// Server-side applies `obj` (our field manager, forced); returns the object as stored.
    pub async fn apply<K>(&self, obj: &K) -> Result<K, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        server_side_apply(&self.api::<K>(), obj, self.what::<K>(&obj.name_any())).await
    }

    /// Server-side applies `obj` of the dynamic type `ar`.
    pub async fn apply_dynamic(
        &self,
        obj: &DynamicObject,
        ar: &ApiResource,
    ) -> Result<(), ApplyError> {
        let api = Api::namespaced_with(self.ctx.client.clone(), &self.ns, ar);
        let what = format!("{} {}/{}", ar.kind, self.ns, obj.name_any());
        server_side_apply(&api, obj, what).await?;
        Ok(())
    }

    /// Creates or replaces a credential, then publishes its Events.
    pub async fn write_secret(&self, write: &SecretWrite) -> Result<(), ApplyError> {
        let name = write.secret.name_any();
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        let api = self.api::<Secret>();
        let (verb, result) = if write.replace {
            // A replace carries no field manager: it is guarded by resourceVersion instead.
            (
                "replace",
                api.replace(&name, &PostParams::default(), &write.secret)
                    .await,
            )
        } else {
            ("create", api.create(&params, &write.secret).await)
        };
        result.map_err(|source| ApplyError::Write {
            verb,
            what: self.what::<Secret>(&name),
            source,
        })?;
        for note in &write.notes {
            self.announce(note).await;
        }
        Ok(())
    }

    /// Deletes `name` of type `K`; one already gone is fine.
    pub async fn delete<K>(&self, name: &str) -> Result<(), ApplyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        not_found_as_none(self.api::<K>().delete(name, &DeleteParams::default()).await).map_err(
            |source| ApplyError::Write {
                verb: "delete",
                what: self.what::<K>(name),
                source,
            },
        )?;
        Ok(())
    }

    /// Deletes `name` of the dynamic type `ar`; one already gone (or a type the cluster
    /// does not serve) is fine.
    pub async fn delete_dynamic(&self, name: &str, ar: &ApiResource) -> Result<(), ApplyError> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.ctx.client.clone(), &self.ns, ar);
        not_found_as_none(api.delete(name, &DeleteParams::default()).await).map_err(|source| {
            ApplyError::Write {
                verb: "delete",
                what: format!("{} {}/{name}", ar.kind, self.ns),
                source,
            }
        })?;
        Ok(())
    }

    /// Publishes `note` about the reconciled object (a failure is logged, never fails the
    /// pass).
    pub async fn announce(&self, note: &Note) {
        self.ctx
            .event(
                &self.regarding,
                note.type_,
                note.reason,
                note.action,
                note.note.clone(),
            )
            .await;
    }
}

/// Server-side applies `obj` through `api` (our field manager, forced); `what` names it in
/// the error.
async fn server_side_apply<K>(api: &Api<K>, obj: &K, what: String) -> Result<K, ApplyError>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| ApplyError::Write {
        verb: "apply",
        what,
        source,
    })
}
