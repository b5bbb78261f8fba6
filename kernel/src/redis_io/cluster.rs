//! Redis Cluster: the seed nodes of a `redis+cluster://` URL, and where each stream's entries
//! are read.
//!
//! The entry reads (XREADGROUP, XAUTOCLAIM, XCLAIM) go over the kernel's own bounded links
//! ([`EntryConn`]), one per slot read, so they are routed here: a stream's slot
//! (`CLUSTER KEYSLOT`, cached) is looked up in a slot map read with `CLUSTER SLOTS`. A MOVED
//! answer updates the map for that slot, so the next read goes to the new owner (after a
//! failover or a resharding). An ASK (a slot being migrated, the key already on the importing
//! node) is followed once, after an `ASKING`, on a link to the node it names, the map left as
//! it is. Every other command goes through redis-rs's cluster connection ([`super::Ops`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use redis::Value;

use super::entry_conn::{EntryConn, LinkError};
use super::ops::Ops;
use super::{reply, RedisIoError};

pub const SCHEME: &str = "redis+cluster://";

/// Slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// `redis+cluster://[user:password@]h1:p1,h2:p2/` → one `redis://[user:password@]h:p/` per
/// seed node; `None` for a URL of one server.
pub fn seeds(url: &str) -> Option<Vec<String>> {
    let rest = url.strip_prefix(SCHEME)?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, hosts) = split_userinfo(authority);
    Some(
        hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{userinfo}{h}/"))
            .collect(),
    )
}

/// `user:password@` (with its `@`, or empty) and the host list of an authority.
fn split_userinfo(authority: &str) -> (&str, &str) {
    match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    }
}

/// The slot and node (`host:port`) of a redirection answer of kind `kind` (`MOVED` or `ASK`):
/// `<kind> <slot> <host:port>`.
fn redirection<'e>(e: &'e LinkError, kind: &str) -> Option<(u16, &'e str)> {
    let LinkError::Server { message, .. } = e else {
        return None;
    };
    let mut words = message.split_whitespace();
    if words.next() != Some(kind) {
        return None;
    }
    let slot = words
        .next()?
        .parse::<u16>()
        .ok()
        .filter(|&s| (s as usize) < SLOTS)?;
    Some((slot, words.next()?))
}

/// A link for entry reads, shared by the calls that use it one at a time.
pub type Link = Arc<tokio::sync::Mutex<EntryConn>>;

/// Which node owns which slot, and a link to each node for the entry reads.
pub struct Router {
    ops: Ops,
    /// `user:password@` of the seed URL, for the links to the nodes.
    userinfo: String,
    owners: RwLock<Vec<Option<Arc<str>>>>,
    slot_of: Mutex<HashMap<String, u16>>,
    /// By node and slot; a link to a node that lost the slot stays unused.
    links: Mutex<HashMap<(Arc<str>, u16), Link>>,
}

impl Router {
    pub fn new(ops: Ops, url: &str) -> Router {
        let authority = url
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.split(['/', '?']).next())
            .unwrap_or_default();
        Router {
            ops,
            userinfo: split_userinfo(authority).0.to_string(),
            owners: RwLock::new(vec![None; SLOTS]),
            slot_of: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    /// `stream`'s slot and the link that reads it: one link per slot, on the node serving
    /// the slot (a command's keys must all be in one slot, so reads of different slots are
    /// separate commands, and separate links let them block at the same time).
    pub async fn link_for(&self, stream: &str) -> Result<(u16, Link), RedisIoError> {
        let slot = self.slot(stream).await?;
        let known = self.owners.read().expect("not poisoned")[slot as usize].clone();
        let node = match known {
            Some(node) => node,
            None => {
                self.refresh().await?;
                self.owners.read().expect("not poisoned")[slot as usize]
                    .clone()
                    .ok_or_else(|| {
                        RedisIoError::Cluster(format!(
                            "no node serves slot {slot} (of stream {stream})"
                        ))
                    })?
            }
        };
        Ok((slot, self.link(&node, slot)?))
    }

    /// Learns from a failed entry read: a MOVED names the slot's new owner; a node that does
    /// not answer may have failed over, so the whole map is read again before the next read.
    pub fn learn(&self, e: &LinkError) {
        if !matches!(e, LinkError::Server { .. } | LinkError::Unsupported(_)) {
            self.owners
                .write()
                .expect("not poisoned")
                .iter_mut()
                .for_each(|owner| *owner = None);
            return;
        }
        if let Some((slot, node)) = redirection(e, "MOVED") {
            tracing::info!(slot, node, "Redis Cluster: slot moved");
            self.owners.write().expect("not poisoned")[slot as usize] = Some(node.into());
        }
    }

    /// Where to follow an ASK answer (a slot being migrated whose key is already on the
    /// importing node): a link to that node for the slot, the command to be sent once after an
    /// `ASKING`. The slot map is left as it is: the slot stays the source's until the
    /// migration ends (then a MOVED says so). `None` for any other error.
    pub fn asked(&self, e: &LinkError) -> Option<Link> {
        let (slot, node) = redirection(e, "ASK")?;
        tracing::debug!(slot, node, "Redis Cluster: ASK followed");
        match self.link(&node.into(), slot) {
            Ok(link) => Some(link),
            Err(error) => {
                tracing::warn!(%error, slot, node, "Redis Cluster: cannot follow an ASK");
                None
            }
        }
    }

    /// The primaries serving slots now (the slot map read again): each holds its own keys.
    pub async fn primaries(&self) -> Result<Vec<Arc<str>>, RedisIoError> {
        self.refresh().await?;
        let mut nodes: Vec<Arc<str>> = self
            .owners
            .read()
            .expect("not poisoned")
            .iter()
            .flatten()
            .cloned()
            .collect();
        nodes.sort();
        nodes.dedup();
        Ok(nodes)
    }

    async fn slot(&self, stream: &str) -> Result<u16, RedisIoError> {
        if let Some(slot) = self.slot_of.lock().expect("not poisoned").get(stream) {
            return Ok(*slot);
        }
        let mut ops = self.ops.clone();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(stream)
            .query_async(&mut ops)
            .await?;
        self.slot_of
            .lock()
            .expect("not poisoned")
            .insert(stream.to_string(), slot);
        Ok(slot)
    }

    /// Reads the whole slot map (`CLUSTER SLOTS`).
    async fn refresh(&self) -> Result<(), RedisIoError> {
        let mut ops = self.ops.clone();
        let value: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut ops)
            .await?;
        let mut owners = vec![None; SLOTS];
        for range in reply::array(&value)? {
            let fields = reply::array(range)?;
            let (Some(Value::Int(from)), Some(Value::Int(to)), Some(primary)) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                continue;
            };
            let primary = reply::array(primary)?;
            let (Some(host), Some(Value::Int(port))) = (primary.first(), primary.get(1)) else {
                continue;
            };
            let node: Arc<str> = format!("{}:{port}", reply::string(host)?).into();
            let to = (*to as usize).min(SLOTS - 1);
            if let Some(range) = owners.get_mut(*from as usize..=to) {
                range.fill(Some(node.clone()));
            }
        }
        *self.owners.write().expect("not poisoned") = owners;
        Ok(())
    }

    fn link(&self, node: &Arc<str>, slot: u16) -> Result<Link, RedisIoError> {
        let mut links = self.links.lock().expect("not poisoned");
        if let Some(link) = links.get(&(node.clone(), slot)) {
            return Ok(link.clone());
        }
        let url = format!("redis://{}{node}/", self.userinfo);
        let info = redis::Client::open(url.as_str())?
            .get_connection_info()
            .clone();
        let link = Arc::new(tokio::sync::Mutex::new(EntryConn::new(&info)?));
        links.insert((node.clone(), slot), link.clone());
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_keep_the_credentials_and_drop_the_scheme() {
        assert_eq!(
            seeds("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001/").unwrap(),
            ["redis://:pw@10.0.0.1:7000/", "redis://:pw@10.0.0.2:7001/"]
        );
        assert_eq!(seeds("redis+cluster://h:1").unwrap(), ["redis://h:1/"]);
        assert_eq!(seeds("redis://h:1/"), None);
    }

    /// An error reply as the entry link reads it off the socket.
    async fn error_reply(raw: &[u8]) -> LinkError {
        let mut reader = super::super::resp::RespReader::new(raw);
        match reader.header().await.unwrap() {
            super::super::resp::Header::Error(message) => LinkError::Server {
                server: "127.0.0.1:7000".into(),
                message,
            },
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[tokio::test]
    async fn ask_and_moved_replies_name_the_slot_and_the_node() {
        let ask = error_reply(b"-ASK 3999 127.0.0.1:7002\r\n").await;
        assert_eq!(ask.code(), Some("ASK"));
        assert_eq!(redirection(&ask, "ASK"), Some((3999, "127.0.0.1:7002")));
        assert_eq!(redirection(&ask, "MOVED"), None);
        let moved = error_reply(b"-MOVED 16383 10.0.0.2:6379\r\n").await;
        assert_eq!(redirection(&moved, "MOVED"), Some((16383, "10.0.0.2:6379")));
        assert_eq!(redirection(&moved, "ASK"), None);
        for bad in [
            &b"-ASK 16384 127.0.0.1:7002\r\n"[..],
            b"-ASK x 127.0.0.1:7002\r\n",
            b"-ASK 12\r\n",
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
        ] {
            assert_eq!(redirection(&error_reply(bad).await, "ASK"), None);
        }
    }
}
