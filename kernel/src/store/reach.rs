//! Where the pool connects, and a quick look whether anything listens there.
//!
//! sqlx retries a refused connection until `acquire_timeout` and then reports only
//! `pool timed out while waiting for an open connection`: the batch waits the whole
//! `postgres.connect_timeout` for an answer that came at once, and the error hides the cause.
//! Before an operation that would open a connection (none idle in the pool), the store opens a
//! bare socket to the server first: a refusal fails the operation at once, naming the server
//! and the OS error; only a silent network waits for `postgres.connect_timeout`. The socket
//! sends nothing, which Postgres does not log.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

/// The server a pool connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl Endpoint {
    pub fn of(options: &PgConnectOptions) -> Endpoint {
        let port = options.get_port();
        match options.get_socket() {
            Some(dir) => Endpoint::Unix(dir.join(format!(".s.PGSQL.{port}"))),
            None if options.get_host().starts_with('/') => {
                Endpoint::Unix(PathBuf::from(options.get_host()).join(format!(".s.PGSQL.{port}")))
            }
            None => Endpoint::Tcp {
                host: options.get_host().to_string(),
                port,
            },
        }
    }

    /// Opens and closes a socket to the server within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> io::Result<()> {
        let connect = async {
            match self {
                Endpoint::Tcp { host, port } => {
                    tokio::net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .map(drop)
                }
                Endpoint::Unix(path) => tokio::net::UnixStream::connect(path).await.map(drop),
            }
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no answer within {} (postgres.connect_timeout)",
                    humantime::format_duration(timeout)
                ),
            )),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_host_and_port_or_the_socket() {
        let tcp: PgConnectOptions = "postgres://u:secret@db.example:6543/x".parse().unwrap();
        assert_eq!(Endpoint::of(&tcp).to_string(), "db.example:6543");
        let unix: PgConnectOptions = "postgres:///x?host=/run/postgresql".parse().unwrap();
        assert_eq!(
            Endpoint::of(&unix).to_string(),
            "/run/postgresql/.s.PGSQL.5432"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_fails_at_once_with_the_os_error() {
        let port = fdc_testenv::ports::free_port().unwrap();
        let endpoint = Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let err = endpoint.probe(Duration::from_secs(30)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
