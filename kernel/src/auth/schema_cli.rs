//! `fdc-kernel schema …` and `fdc-kernel producer bind`: admin API clients of the payload
//! schema registry (docs/schemas.md), in the style of `fdc-kernel admin`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use fdc_common::contract;
use uuid::Uuid;

use super::cli::{print_answer, send_admin, AdminEndpoint};

#[derive(Args, Debug, Clone)]
pub struct SchemaArgs {
    #[command(flatten)]
    pub endpoint: AdminEndpoint,
    #[command(subcommand)]
    pub command: SchemaCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum SchemaCommand {
    /// Add a schema version from a JSON Schema file (refused with the compiler's message
    /// when the file is not a valid JSON Schema). Repeating it with the same file changes
    /// nothing.
    Add {
        /// Schema name: letters, digits, '.', '_', '-'.
        #[arg(long)]
        name: String,
        /// Semantic version, e.g. 1.2.0.
        #[arg(long)]
        version: String,
        /// The JSON Schema (draft 2020-12, 2019-09, 7, 6 or 4; set by its `$schema`).
        #[arg(long)]
        file: PathBuf,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long, default_value = "added with fdc-kernel schema add")]
        reason: String,
    },
    /// List every schema version.
    List,
    /// Show one version with its body and the producers bound to it.
    Show {
        /// Schema name.
        name: String,
        /// Semantic version, e.g. 1.2.0.
        version: String,
    },
    /// Deprecate a version: it keeps validating for the producers bound to it, but no new
    /// binding may pick it.
    Deprecate {
        /// Schema name.
        name: String,
        /// Semantic version, e.g. 1.2.0.
        version: String,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long, default_value = "deprecated with fdc-kernel schema deprecate")]
        reason: String,
    },
    /// Delete a version that no producer or stream is bound to.
    Delete {
        /// Schema name.
        name: String,
        /// Semantic version, e.g. 1.2.0.
        version: String,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long, default_value = "deleted with fdc-kernel schema delete")]
        reason: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ProducerArgs {
    #[command(flatten)]
    pub endpoint: AdminEndpoint,
    #[command(subcommand)]
    pub command: ProducerCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ProducerCommand {
    /// Bind a producer to a payload schema (or unbind it with --none). Replicas validate
    /// with the new binding within ingest.schema_cache_ttl.
    Bind {
        /// The producer's id (a UUID).
        producer_id: Uuid,
        /// `name` (newest version), `name@1.2.0` (exactly) or `name@^1.2` (newest matching).
        #[arg(long, required_unless_present = "none")]
        schema: Option<String>,
        /// Remove the producer's binding.
        #[arg(long, conflicts_with = "schema")]
        none: bool,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long, default_value = "bound with fdc-kernel producer bind")]
        reason: String,
    },
}

pub async fn schema(args: SchemaArgs) -> anyhow::Result<()> {
    let (base, token) = args.endpoint.open()?;
    let http = reqwest::Client::new();
    let req = match &args.command {
        SchemaCommand::Add {
            name,
            version,
            file,
            reason,
        } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            http.post(format!("{base}{}", contract::SCHEMAS_ROUTE))
                .json(&serde_json::json!({
                    "name": name, "version": version, "body": body, "reason": reason
                }))
        }
        SchemaCommand::List => http.get(format!("{base}{}", contract::SCHEMAS_ROUTE)),
        SchemaCommand::Show { name, version } => {
            http.get(format!("{base}{}", contract::schema_path(name, version)))
        }
        SchemaCommand::Deprecate {
            name,
            version,
            reason,
        } => http
            .post(format!(
                "{base}{}",
                contract::schema_deprecate_path(name, version)
            ))
            .json(&serde_json::json!({ "reason": reason })),
        SchemaCommand::Delete {
            name,
            version,
            reason,
        } => http
            .delete(format!("{base}{}", contract::schema_path(name, version)))
            .query(&[("reason", reason)]),
    };
    print_answer(&send_admin(base, req.bearer_auth(token.as_str())).await?)
}

pub async fn producer(args: ProducerArgs) -> anyhow::Result<()> {
    let (base, token) = args.endpoint.open()?;
    let ProducerCommand::Bind {
        producer_id,
        schema,
        reason,
        ..
    } = &args.command;
    let req = reqwest::Client::new()
        .post(format!(
            "{base}{}",
            contract::producer_schema_path(producer_id)
        ))
        .json(&serde_json::json!({ "schema": schema, "reason": reason }));
    print_answer(&send_admin(base, req.bearer_auth(token.as_str())).await?)
}
