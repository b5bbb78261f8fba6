//! Leader election on a Lease (kube-lease-manager), so two operator replicas never
//! reconcile at the same time.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::labels::FIELD_MANAGER;

/// Seconds a lease stays valid without renewal; a crashed leader is replaced after this.
pub const LEASE_DURATION_SECS: u64 = 15;
/// Renew this many seconds before expiry (also the tolerated clock skew).
pub const LEASE_GRACE_SECS: u64 = 5;

/// Field manager of this replica's Lease writes.
fn field_manager(identity: &str) -> String {
    format!("{FIELD_MANAGER}-lease-{identity}")
}

/// Held leadership. Dropping it releases the Lease.
pub struct Leadership {
    state: watch::Receiver<bool>,
    _task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Waits until this replica holds the Lease `name` in `namespace`.
pub async fn acquire(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> Result<Leadership, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        // The builder keeps a field manager derived from a random identity; name it after
        // this replica instead (distinct per replica, which the lock's server-side apply
        // needs to detect a competing taker, and readable in managedFields).
        .with_field_manager(field_manager(identity))
        .with_duration(LEASE_DURATION_SECS)
        .with_grace(LEASE_GRACE_SECS)
        .build()
        .await?;
    let (mut state, task) = manager.watch().await;
    while !*state.borrow_and_update() {
        if state.changed().await.is_err() {
            break;
        }
    }
    Ok(Leadership { state, _task: task })
}

impl Leadership {
    /// Resolves when leadership is lost (the lease was taken over or could not be renewed).
    pub async fn lost(&mut self) {
        loop {
            if !*self.state.borrow_and_update() {
                return;
            }
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
