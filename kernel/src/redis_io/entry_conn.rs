//! The connection for the commands that return entry bodies (XREADGROUP, XAUTOCLAIM, XCLAIM):
//! replies are decoded off the socket by [`super::entry_reply`], so no entry is held beyond its
//! bound, whatever Redis sends. Other commands use redis-rs.
//!
//! Connects lazily to the server of `redis.url` (TCP host/port or a Unix socket, with the
//! URL's user, password and database), one command at a time. After any error or a call that
//! was cut short, the link is dropped and the next call connects again. A call fails when
//! Redis sends nothing for its timeout (a BLOCK plus a margin), however long a large reply
//! takes as a whole.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};

use super::entry_reply::{self, EntryBounds};
use super::resp::{encode_command, Header, RespError, RespReader};
use crate::entry::Entry;

/// Read buffer of the link: bulk strings pass through it in pieces of at most this size.
const BUFFER: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

type Link = RespReader<BufReader<Box<dyn Io>>>;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to Redis at {server}: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error("Redis at {server}: {source}")]
    Io {
        server: String,
        source: std::io::Error,
    },
    #[error("Redis at {server} sent nothing for {secs} s")]
    Timeout { server: String, secs: u64 },
    #[error("Redis at {server} closed the connection mid-reply")]
    Closed { server: String },
    #[error("Redis at {server} sent a malformed reply: {what}")]
    Protocol { server: String, what: String },
    #[error("Redis at {server} answered: {message}")]
    Server { server: String, message: String },
    #[error("redis.url: {0}")]
    Unsupported(String),
}

impl LinkError {
    /// The error code of an error reply (`NOGROUP`, `WRONGPASS`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            LinkError::Server { message, .. } => message.split(' ').next(),
            _ => None,
        }
    }

    fn from_resp(server: &str, e: RespError) -> LinkError {
        let server = server.to_string();
        match e {
            RespError::Closed => LinkError::Closed { server },
            RespError::Io(source) => LinkError::Io { server, source },
            RespError::Protocol(what) => LinkError::Protocol { server, what },
            RespError::Server(message) => LinkError::Server { server, message },
        }
    }
}

enum Addr {
    Tcp(String, u16),
    Unix(PathBuf),
}

pub struct EntryConn {
    addr: Addr,
    /// `host:port` or the socket path, for errors.
    server: String,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    link: Option<Link>,
    /// A command went out whose reply was not read in full (a cancelled call): the link is
    /// out of step and is dropped before the next command.
    busy: bool,
    /// Bytes received so far: a call times out when this stops growing, not when a long
    /// reply (many big entries) merely takes long.
    progress: Arc<AtomicU64>,
    /// The next command goes after an `ASKING` (see [`EntryConn::ask_next`]).
    asking: bool,
}

/// What a command's reply holds.
enum Shape<'a> {
    Read,
    AutoClaim(&'a str),
    Claim(&'a str),
}

enum Reply {
    Entries(Vec<Entry>),
    AutoClaim(String, Vec<Entry>, Vec<String>),
}

impl EntryConn {
    /// A connection to the server of `info` (from `redis.url`); connects on first use.
    pub fn new(info: &redis::ConnectionInfo) -> Result<EntryConn, LinkError> {
        let (addr, server) = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => {
                (Addr::Tcp(host.clone(), *port), format!("{host}:{port}"))
            }
            redis::ConnectionAddr::Unix(path) => {
                (Addr::Unix(path.clone()), path.display().to_string())
            }
            other => {
                return Err(LinkError::Unsupported(format!(
                    "this build reads streams over TCP or Unix sockets only, not {other}"
                )))
            }
        };
        let settings = info.redis_settings();
        Ok(EntryConn {
            addr,
            server,
            username: settings.username().map(str::to_string),
            password: settings.password().map(str::to_string),
            db: settings.db(),
            link: None,
            busy: false,
            progress: Arc::new(AtomicU64::new(0)),
            asking: false,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends the next command (only that one) after an `ASKING`, on the same link: an ASK
    /// redirection to the node importing the command's slot, which serves the slot's keys it
    /// already holds to that one command only.
    pub fn ask_next(&mut self) {
        self.asking = true;
    }

    /// XREADGROUP `args` (everything after the command name).
    pub async fn read(
        &mut self,
        args: &[Vec<u8>],
        bounds: &EntryBounds,
        timeout: Duration,
    ) -> Result<Vec<Entry>, LinkError> {
        match self
            .exchange(b"XREADGROUP", args, Shape::Read, bounds, timeout)
            .await?
        {
            Reply::Entries(e) => Ok(e),
            Reply::AutoClaim(..) => unreachable!("shape Read"),
        }
    }

    /// XAUTOCLAIM `args` on `stream`: the next cursor, the entries, the ids found deleted.
    pub async fn autoclaim(
        &mut self,
        stream: &str,
        args: &[Vec<u8>],
        bounds: &EntryBounds,
        timeout: Duration,
    ) -> Result<(String, Vec<Entry>, Vec<String>), LinkError> {
        match self
            .exchange(
                b"XAUTOCLAIM",
                args,
                Shape::AutoClaim(stream),
                bounds,
                timeout,
            )
            .await?
        {
            Reply::AutoClaim(next, entries, deleted) => Ok((next, entries, deleted)),
            Reply::Entries(_) => unreachable!("shape AutoClaim"),
        }
    }

    /// XCLAIM `args` on `stream` (with bodies).
    pub async fn claim(
        &mut self,
        stream: &str,
        args: &[Vec<u8>],
        bounds: &EntryBounds,
        timeout: Duration,
    ) -> Result<Vec<Entry>, LinkError> {
        match self
            .exchange(b"XCLAIM", args, Shape::Claim(stream), bounds, timeout)
            .await?
        {
            Reply::Entries(e) => Ok(e),
            Reply::AutoClaim(..) => unreachable!("shape Claim"),
        }
    }

    async fn exchange(
        &mut self,
        command: &[u8],
        args: &[Vec<u8>],
        shape: Shape<'_>,
        bounds: &EntryBounds,
        timeout: Duration,
    ) -> Result<Reply, LinkError> {
        if self.busy {
            self.link = None;
        }
        let server = self.server.clone();
        let mut words: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
        words.push(command);
        words.extend(args.iter().map(Vec::as_slice));
        let asking = std::mem::take(&mut self.asking);
        let mut request = Vec::new();
        if asking {
            request.extend(encode_command(&[b"ASKING"]));
        }
        request.extend(encode_command(&words));
        let progress = self.progress.clone();
        let work = async {
            if self.link.is_none() {
                self.link = Some(self.connect().await?);
            }
            let link = self.link.as_mut().expect("connected above");
            self.busy = true;
            send(link, &request)
                .await
                .map_err(|e| LinkError::from_resp(&server, e))?;
            if asking {
                // `+OK`, or an error that leaves the command's own reply unread (the link is
                // dropped on any error).
                match link.header().await {
                    Ok(Header::Error(message)) => {
                        return Err(LinkError::Server {
                            server: server.clone(),
                            message: format!("{message} (to ASKING)"),
                        })
                    }
                    Ok(other) => link
                        .skip_rest(&other)
                        .await
                        .map_err(|e| LinkError::from_resp(&server, e))?,
                    Err(e) => return Err(LinkError::from_resp(&server, e)),
                }
            }
            let reply = match shape {
                Shape::Read => entry_reply::read_reply(link, bounds)
                    .await
                    .map(Reply::Entries),
                Shape::AutoClaim(stream) => entry_reply::autoclaim_reply(link, stream, bounds)
                    .await
                    .map(|(n, e, d)| Reply::AutoClaim(n, e, d)),
                Shape::Claim(stream) => {
                    let mut out = Vec::new();
                    entry_reply::entries(link, stream, bounds, &mut out)
                        .await
                        .map(|()| Reply::Entries(out))
                }
            };
            reply.map_err(|e| LinkError::from_resp(&server, e))
        };
        let outcome = until_idle(work, &progress, timeout).await;
        match outcome {
            Ok(Ok(reply)) => {
                self.busy = false;
                Ok(reply)
            }
            Ok(Err(e)) => {
                // An error may leave part of the reply unread: start afresh next time.
                self.link = None;
                self.busy = false;
                Err(e)
            }
            Err(_) => {
                self.link = None;
                self.busy = false;
                Err(LinkError::Timeout {
                    server,
                    secs: timeout.as_secs(),
                })
            }
        }
    }

    async fn connect(&self) -> Result<Link, LinkError> {
        let failed = |source: std::io::Error| LinkError::Connect {
            server: self.server.clone(),
            source,
        };
        let io: Box<dyn Io> = match &self.addr {
            Addr::Tcp(host, port) => {
                let stream = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| failed(std::io::ErrorKind::TimedOut.into()))?
                .map_err(failed)?;
                stream.set_nodelay(true).map_err(failed)?;
                Box::new(stream)
            }
            Addr::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(failed)?,
            ),
        };
        let io: Box<dyn Io> = Box::new(Counting {
            inner: io,
            read: self.progress.clone(),
        });
        let mut link = RespReader::new(BufReader::with_capacity(BUFFER, io));
        if let Some(password) = &self.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.username {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            self.handshake(&mut link, &auth).await?;
        }
        if self.db != 0 {
            let db = self.db.to_string();
            self.handshake(&mut link, &[b"SELECT", db.as_bytes()])
                .await?;
        }
        Ok(link)
    }

    /// A setup command answered by `+OK` (or any simple value); its error names the command
    /// only, never its arguments (a password).
    async fn handshake(&self, link: &mut Link, words: &[&[u8]]) -> Result<(), LinkError> {
        let fail = |e| LinkError::from_resp(&self.server, e);
        send(link, &encode_command(words)).await.map_err(fail)?;
        match link.header().await.map_err(fail)? {
            Header::Error(message) => Err(LinkError::Server {
                server: self.server.clone(),
                message: format!("{message} (to {})", String::from_utf8_lossy(words[0])),
            }),
            other => {
                link.skip_rest(&other).await.map_err(fail)?;
                Ok(())
            }
        }
    }
}

async fn send(link: &mut Link, request: &[u8]) -> Result<(), RespError> {
    let io = link.get_mut().get_mut();
    io.write_all(request).await?;
    io.flush().await?;
    Ok(())
}

/// Runs `work` until it ends, or until `progress` has not grown for `idle` (then `Err(())`).
async fn until_idle<F: std::future::Future>(
    work: F,
    progress: &AtomicU64,
    idle: Duration,
) -> Result<F::Output, ()> {
    tokio::pin!(work);
    let mut seen = progress.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            out = &mut work => return Ok(out),
            _ = tokio::time::sleep(idle) => {
                let now = progress.load(Ordering::Relaxed);
                if now == seen {
                    return Err(());
                }
                seen = now;
            }
        }
    }
}

/// The socket, counting the bytes it receives.
struct Counting {
    inner: Box<dyn Io>,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        if got > 0 {
            self.read.fetch_add(got as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_reply_that_keeps_coming_is_not_cut_but_silence_is() {
        let progress = AtomicU64::new(0);
        let trickle = async {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                progress.fetch_add(1, Ordering::Relaxed);
            }
        };
        // 400 ms in all, never 300 ms without a byte.
        assert!(until_idle(trickle, &progress, Duration::from_millis(300))
            .await
            .is_ok());
        let silent = tokio::time::sleep(Duration::from_secs(10));
        assert!(until_idle(silent, &progress, Duration::from_millis(300))
            .await
            .is_err());
    }
}
