//! Fault injection: servers and kernel processes killed, refused, filled or damaged, with
//! an exact-outcome oracle. The tests run one at a time (`fault_support::serial`), as they did
//! as separate binaries: they kill processes and wait on timeouts.
//!
//! One module per concern; a test runs as `<module>::<test>`.

#[path = "../fault_support/mod.rs"]
mod fault_support;
#[path = "../support/mod.rs"]
mod support;

mod fault_inflight_bytes;
mod fault_kernel_kill;
mod fault_postgres_kill;
mod fault_postgres_refused;
mod fault_postgres_switchover;
mod fault_redis_cluster;
mod fault_redis_cluster_discovery;
mod fault_redis_cluster_resharding;
mod fault_redis_restart;
mod fault_replica_death;
mod fault_spill_damage;
mod fault_spill_full;
mod fault_spill_version;
mod fault_trimmed_pending;
