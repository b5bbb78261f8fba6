//! Every reconcile runs in a `reconcile` span naming the object.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use kube::core::error_boundary::InvalidObject;
use kube::core::DeserializeGuard;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::Layer;

use crate::controller::fixtures::{kernel, producer, test_context, FakeKernel, NS};
use crate::controller::reconcile;
use crate::crd::{FdcKernel, Producer};

/// The thread that created a span, its name and its fields, as text.
type Seen = (ThreadId, String, Vec<(String, String)>);

/// Records the thread, name and fields of every span created.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

/// The process-wide recorder. A subscriber installed per thread (`set_default`) races with the
/// other tests of this binary: whichever thread first reaches a span's callsite caches whether
/// any subscriber wants it, and could cache "no" just before this test's subscriber arrived
/// (the span then went missing about one run in eight). A global subscriber is always
/// counted; the test keeps only the spans of its own thread (a current-thread runtime, so its
/// spawned tasks run there too).
fn recorder() -> &'static Spans {
    static SPANS: OnceLock<Spans> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Spans::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
            .expect("no other test of this binary installs a global subscriber");
        spans
    })
}

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl<S: Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: LayerContext<'_, S>) {
        let mut fields = Fields(Vec::new());
        attrs.record(&mut fields);
        self.0.lock().unwrap().push((
            std::thread::current().id(),
            attrs.metadata().name().to_string(),
            fields.0,
        ));
    }
}

fn fields(kind: &str, name: &str, generation: &str) -> Vec<(String, String)> {
    [
        ("kind", kind),
        ("namespace", NS),
        ("name", name),
        ("generation", generation),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test]
async fn each_reconcile_runs_in_a_span_naming_kind_namespace_name_and_generation() {
    let spans = recorder();
    let this_thread = std::thread::current().id();
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);

    // Malformed objects (their spec does not deserialize): one Warning Event each.
    let mut k = kernel("k", 1).metadata;
    k.generation = Some(7);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let invalid = InvalidObject {
            error: "bad".into(),
            metadata: k,
        };
        async move { reconcile::<FdcKernel>(Arc::new(DeserializeGuard(Err(invalid))), ctx).await }
    });
    server.expect_event(NS, "InvalidSpec").await;
    task.await.unwrap().unwrap();
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let invalid = InvalidObject {
            error: "bad".into(),
            metadata: producer("orders", "k").metadata,
        };
        async move { reconcile::<Producer>(Arc::new(DeserializeGuard(Err(invalid))), ctx).await }
    });
    server.expect_event(NS, "InvalidSpec").await;
    task.await.unwrap().unwrap();

    let seen: Vec<_> = spans
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(thread, name, _)| *thread == this_thread && name == "reconcile")
        .map(|(_, _, f)| f.clone())
        .collect();
    assert_eq!(
        seen,
        [
            fields("FdcKernel", "k", "7"),
            fields("Producer", "orders", "1")
        ]
    );
    drop(ctx);
    server.expect_done().await;
}
