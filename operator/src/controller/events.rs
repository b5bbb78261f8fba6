//! Kubernetes Events (`events.k8s.io/v1`), one per distinct note.
//!
//! kube-runtime's `Recorder` folds every Event with the same type, reason and action into one
//! series and keeps the first note, so "scaling in: pod k-2 removed" followed by "pod k-1
//! removed" shows only the first step. Here the note is part of the series key: an identical
//! repeat (e.g. the same failure on every retry) becomes a series (`series.count`), and a
//! different note is an Event of its own, readable without the ones before it.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::Client;
use serde_json::json;

/// How long a published Event stays eligible for folding repeats into its series (as
/// kube-runtime and client-go do).
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);

/// Longest note the API server accepts (`note` is limited to 1 kB).
const MAX_NOTE_BYTES: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

#[derive(Clone, Debug)]
struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes Events as `controller` (reporting instance `instance`).
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<Key, Published>>,
}

impl Publisher {
    pub fn new(client: Client, controller: String, instance: Option<String>) -> Self {
        Publisher {
            client,
            instance: instance.unwrap_or_else(|| controller.clone()),
            controller,
            published: Mutex::new(HashMap::new()),
        }
    }

    /// Creates an Event about `regarding`, or, for an identical one published in the last
    /// [`SERIES_TTL`], counts the repeat in that Event's `series`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let type_ = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let note = bounded(note);
        let key = Key {
            type_,
            reason: reason.to_string(),
            action: action.to_string(),
            note: note.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            uid: regarding.uid.clone(),
        };
        let repeat = {
            let mut published = self.published.lock().expect("poisoned");
            published.retain(|_, p| p.last + SERIES_TTL > now);
            published.get(&key).cloned()
        };
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let record = match repeat {
            Some(mut p) => {
                p.count += 1;
                p.last = now;
                let series = json!({
                    "series": EventSeries { count: p.count, last_observed_time: MicroTime(now) }
                });
                events
                    .patch(&p.name, &PatchParams::default(), &Patch::Merge(&series))
                    .await?;
                p
            }
            None => {
                let name = format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                );
                let event = K8sEvent {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    action: Some(action.to_string()),
                    reason: Some(reason.to_string()),
                    note: Some(note),
                    type_: Some(type_.to_string()),
                    event_time: Some(MicroTime(now)),
                    regarding: Some(regarding.clone()),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    ..K8sEvent::default()
                };
                events.create(&PostParams::default(), &event).await?;
                Published {
                    name,
                    count: 1,
                    last: now,
                }
            }
        };
        self.published.lock().expect("poisoned").insert(key, record);
        Ok(())
    }
}

/// `note` cut to what the API server accepts, on a character boundary.
fn bounded(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{mock_client, NS};

    fn pod_ref() -> ObjectReference {
        ObjectReference {
            api_version: Some("fdc.dev/v1alpha1".into()),
            kind: Some("FdcKernel".into()),
            name: Some("k".into()),
            namespace: Some(NS.into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        }
    }

    #[tokio::test]
    async fn a_different_note_is_a_new_event_and_an_identical_one_a_series() {
        let (client, mut server) = mock_client();
        let publisher = Publisher::new(client, "fdc-operator".into(), Some("test".into()));
        let task = tokio::spawn(async move {
            let r = pod_ref();
            for note in ["removed pod k-2", "removed pod k-1", "removed pod k-1"] {
                publisher
                    .publish(&r, EventType::Normal, "ScalingIn", "Scale", note)
                    .await
                    .unwrap();
            }
        });
        let uri = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events?");
        let first = server.expect("POST", &uri).await;
        assert_eq!(first.body["note"], "removed pod k-2");
        assert_eq!(first.body["reason"], "ScalingIn");
        assert_eq!(first.body["reportingController"], "fdc-operator");
        assert_eq!(first.body["reportingInstance"], "test");
        assert_eq!(first.body["regarding"]["name"], "k");
        first.echo();
        let second = server.expect("POST", &uri).await;
        assert_eq!(second.body["note"], "removed pod k-1");
        let name = second.body["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        second.echo();
        let repeat = server
            .expect(
                "PATCH",
                &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events/{name}?"),
            )
            .await;
        assert_eq!(repeat.body["series"]["count"], 2);
        repeat.ok(&json!({}));
        task.await.unwrap();
        server.expect_done().await;
    }

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let note = "é".repeat(MAX_NOTE_BYTES);
        let cut = bounded(&note);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short"), "short");
    }
}
