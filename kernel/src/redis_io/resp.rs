//! An incremental RESP2/RESP3 decoder for the replies that carry stream entries.
//!
//! Unlike a general client, it never builds the whole reply: the caller walks it header by
//! header, and reads each bulk string with a bound of its own choosing. A bulk string longer
//! than that bound is streamed through an incremental SHA-256, keeping only a prefix and its
//! length, so an entry of any size costs the kernel a bounded amount of memory. Nothing here
//! allocates by a length the server announces unless the caller's bound allows it; lines
//! (simple strings, errors, numbers) are capped at [`MAX_LINE`].

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest header or simple-string line accepted.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("the connection was closed mid-reply")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed reply: {0}")]
    Protocol(String),
    /// An error reply (`-ERR …`, `!…`) where the caller expected a value.
    #[error("{0}")]
    Server(String),
}

impl RespError {
    fn protocol(what: impl Into<String>) -> RespError {
        RespError::Protocol(what.into())
    }
}

/// The start of one value. Aggregates give their element count; a bulk string its length
/// (its bytes are read next with [`RespReader::bulk`] or [`RespReader::discard`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// `$-1`, `*-1`, `_`.
    Nil,
    /// `*n`, `~n` (set), `>n` (push).
    Array(usize),
    /// `%n`: n key/value pairs (2n values follow).
    Map(usize),
    /// `$n`, `=n` (verbatim string, its `txt:` prefix included).
    Bulk(usize),
    /// `+…`, and the scalar RESP3 types as their text (`#t`, `,1.5`, `(123`).
    Line(Vec<u8>),
    Int(i64),
    /// `-…` or `!n` (a bulk error, read whole up to [`MAX_LINE`]).
    Error(String),
}

enum Raw {
    Attribute(usize),
    Value(Header),
}

/// A bulk string as kept: all of it, or a prefix with the full length and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bulk {
    pub kept: Vec<u8>,
    pub len: usize,
    /// SHA-256 of all `len` bytes; `None` when `kept` is all of them.
    pub sha256: Option<[u8; 32]>,
}

pub struct RespReader<R> {
    inner: R,
}

impl<R: AsyncBufRead + Unpin> RespReader<R> {
    pub fn new(inner: R) -> RespReader<R> {
        RespReader { inner }
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The bytes read and not yet consumed, reading more only when there are none: for a
    /// caller that decodes a whole value from them at once (then [`consume`](Self::consume)).
    pub async fn buffered(&mut self) -> Result<&[u8], RespError> {
        Ok(self.inner.fill_buf().await?)
    }

    /// Marks `n` bytes of [`buffered`](Self::buffered) as read.
    pub fn consume(&mut self, n: usize) {
        self.inner.consume(n);
    }

    /// The next value's header; attributes (`|n`, RESP3 metadata) are skipped.
    pub async fn header(&mut self) -> Result<Header, RespError> {
        loop {
            match self.raw_header().await? {
                Raw::Attribute(pairs) => self.skip_n((pairs as u64).saturating_mul(2)).await?,
                Raw::Value(header) => return Ok(header),
            }
        }
    }

    async fn raw_header(&mut self) -> Result<Raw, RespError> {
        // Fast path, no allocation: a length or integer line already in the buffer (the
        // headers of arrays and bulk strings, nearly every line of an entry reply).
        let buf = self.inner.fill_buf().await?;
        if let Some(end) = buf.iter().take(32).position(|&b| b == b'\n') {
            if end >= 2 && buf[end - 1] == b'\r' {
                let quick = numeric_header(buf[0], &buf[1..end - 1]);
                if let Some(header) = quick {
                    self.inner.consume(end + 1);
                    return header.map(Raw::Value);
                }
            }
        }
        let line = self.line().await?;
        let (kind, rest) = line
            .split_first()
            .ok_or_else(|| RespError::protocol("empty line"))?;
        let header = match kind {
            b'*' | b'~' | b'>' => match length(rest)? {
                None => Header::Nil,
                Some(n) => Header::Array(n),
            },
            b'%' => Header::Map(length(rest)?.unwrap_or(0)),
            b'|' => return Ok(Raw::Attribute(length(rest)?.unwrap_or(0))),
            b'$' | b'=' => match length(rest)? {
                None => Header::Nil,
                Some(n) => Header::Bulk(n),
            },
            b'_' => Header::Nil,
            b':' => Header::Int(integer(rest)?),
            b'+' | b'#' | b',' | b'(' => Header::Line(rest.to_vec()),
            b'-' => Header::Error(String::from_utf8_lossy(rest).into_owned()),
            b'!' => {
                let n = length(rest)?.unwrap_or(0);
                let bulk = self.bulk(n, MAX_LINE, MAX_LINE).await?;
                Header::Error(String::from_utf8_lossy(&bulk.kept).into_owned())
            }
            other => {
                return Err(RespError::protocol(format!(
                    "unknown type byte 0x{other:02x}"
                )))
            }
        };
        Ok(Raw::Value(header))
    }

    /// The `len` bytes of a bulk string whose header was just read, and its CRLF. Held whole
    /// when `len <= whole_up_to`; otherwise only the first `prefix` bytes are kept, with the
    /// length and SHA-256 of all of them. Allocates at most `max(whole_up_to, prefix)` bytes
    /// (never more than `len`).
    pub async fn bulk(
        &mut self,
        len: usize,
        whole_up_to: usize,
        prefix: usize,
    ) -> Result<Bulk, RespError> {
        let whole = len <= whole_up_to;
        // Fast path: the whole string is already in the buffer (nearly every field of an
        // entry reply): one copy, no chunk loop.
        if whole {
            let buf = self.inner.fill_buf().await?;
            if buf.len() >= len {
                let kept = buf[..len].to_vec();
                self.inner.consume(len);
                self.crlf().await?;
                return Ok(Bulk {
                    kept,
                    len,
                    sha256: None,
                });
            }
        }
        let keep = if whole { len } else { prefix.min(len) };
        let mut kept = Vec::with_capacity(keep);
        let mut hasher = (!whole).then(Sha256::new);
        self.chunks(len, |chunk| {
            let room = keep - kept.len();
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if let Some(h) = hasher.as_mut() {
                h.update(chunk);
            }
        })
        .await?;
        self.crlf().await?;
        Ok(Bulk {
            kept,
            len,
            sha256: hasher.map(|h| h.finalize().into()),
        })
    }

    /// Reads past the `len` bytes of a bulk string and its CRLF, keeping nothing.
    pub async fn discard(&mut self, len: usize) -> Result<(), RespError> {
        self.chunks(len, |_| {}).await?;
        self.crlf().await
    }

    /// Reads the next `len` bytes as they come into the buffer, handing each chunk to `take`:
    /// nothing is held beyond the reader's own buffer.
    async fn chunks(&mut self, len: usize, mut take: impl FnMut(&[u8])) -> Result<(), RespError> {
        let mut left = len;
        while left > 0 {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Err(RespError::Closed);
            }
            let n = buf.len().min(left);
            take(&buf[..n]);
            self.inner.consume(n);
            left -= n;
        }
        Ok(())
    }

    /// Reads past one whole value, whatever its shape, without recursion or allocation by
    /// its size.
    pub async fn skip(&mut self) -> Result<(), RespError> {
        self.skip_n(1).await
    }

    async fn skip_n(&mut self, values: u64) -> Result<(), RespError> {
        let mut todo = values;
        while todo > 0 {
            todo -= 1;
            match self.raw_header().await? {
                // Its pairs, then the value it annotates.
                Raw::Attribute(n) => {
                    todo = todo.saturating_add((n as u64).saturating_mul(2).saturating_add(1))
                }
                Raw::Value(Header::Array(n)) => todo = todo.saturating_add(n as u64),
                Raw::Value(Header::Map(n)) => {
                    todo = todo.saturating_add((n as u64).saturating_mul(2))
                }
                Raw::Value(Header::Bulk(n)) => self.discard(n).await?,
                Raw::Value(_) => {}
            }
        }
        Ok(())
    }

    /// A short string value (a stream name, an entry id, a cursor): a bulk string of at most
    /// `max` bytes, a simple string or an integer. Longer ones are a protocol error (after
    /// being read past, so the reply stays in step).
    pub async fn short(&mut self, max: usize, what: &str) -> Result<Vec<u8>, RespError> {
        match self.header().await? {
            Header::Bulk(n) => {
                let bulk = self.bulk(n, max, 0).await?;
                if bulk.sha256.is_some() {
                    return Err(RespError::protocol(format!(
                        "{what} of {n} bytes, more than {max}"
                    )));
                }
                Ok(bulk.kept)
            }
            Header::Line(text) => Ok(text),
            Header::Int(i) => Ok(i.to_string().into_bytes()),
            Header::Error(e) => Err(RespError::Server(e)),
            other => {
                self.skip_rest(&other).await?;
                Err(RespError::protocol(format!(
                    "expected {what}, got {other:?}"
                )))
            }
        }
    }

    /// After an unexpected `header`: reads past what follows it, keeping the reply in step.
    pub async fn skip_rest(&mut self, header: &Header) -> Result<(), RespError> {
        match header {
            Header::Array(n) => self.skip_n(*n as u64).await,
            Header::Map(n) => self.skip_n((*n as u64).saturating_mul(2)).await,
            Header::Bulk(n) => self.discard(*n).await,
            _ => Ok(()),
        }
    }

    /// One line without its CRLF, at most [`MAX_LINE`] bytes.
    async fn line(&mut self) -> Result<Vec<u8>, RespError> {
        let mut line = Vec::new();
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Err(RespError::Closed);
            }
            let (n, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if line.len() + n > MAX_LINE + 2 {
                return Err(RespError::protocol(format!(
                    "line longer than {MAX_LINE} bytes"
                )));
            }
            line.extend_from_slice(&buf[..n]);
            self.inner.consume(n);
            if done {
                break;
            }
        }
        line.pop(); // '\n'
        if line.pop() != Some(b'\r') {
            return Err(RespError::protocol("line not ended by CRLF"));
        }
        Ok(line)
    }

    async fn crlf(&mut self) -> Result<(), RespError> {
        let buf = self.inner.fill_buf().await?;
        if buf.len() >= 2 {
            let ok = &buf[..2] == b"\r\n";
            self.inner.consume(2);
            return match ok {
                true => Ok(()),
                false => Err(RespError::protocol("bulk string not ended by CRLF")),
            };
        }
        let mut got = [0u8; 2];
        let mut have = 0;
        while have < 2 {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Err(RespError::Closed);
            }
            let n = buf.len().min(2 - have);
            got[have..have + n].copy_from_slice(&buf[..n]);
            self.inner.consume(n);
            have += n;
        }
        if &got != b"\r\n" {
            return Err(RespError::protocol("bulk string not ended by CRLF"));
        }
        Ok(())
    }
}

/// The header of a line `kind` + `rest` when it is all numbers (`*`, `~`, `>`, `$`, `=`,
/// `:`); `None` for the other kinds.
fn numeric_header(kind: u8, rest: &[u8]) -> Option<Result<Header, RespError>> {
    let header = match kind {
        b'*' | b'~' | b'>' => length(rest).map(|n| n.map_or(Header::Nil, Header::Array)),
        b'$' | b'=' => length(rest).map(|n| n.map_or(Header::Nil, Header::Bulk)),
        b':' => integer(rest).map(Header::Int),
        _ => return None,
    };
    Some(header)
}

fn integer(text: &[u8]) -> Result<i64, RespError> {
    decimal(text).ok_or_else(|| {
        RespError::protocol(format!(
            "bad integer {:?}",
            String::from_utf8_lossy(&text[..text.len().min(32)])
        ))
    })
}

/// A signed decimal as `str::parse::<i64>` reads it (an optional `+` or `-`, then digits),
/// straight from the bytes: every header line of a reply is one, so no UTF-8 check first.
fn decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated as a negative number, so i64::MIN fits.
    let mut value: i64 = 0;
    for &b in digits {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_sub(i64::from(digit))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// A length: `-1` is nil, other negative numbers are errors.
fn length(text: &[u8]) -> Result<Option<usize>, RespError> {
    match integer(text)? {
        -1 => Ok(None),
        n if n < 0 => Err(RespError::protocol(format!("negative length {n}"))),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| RespError::protocol(format!("length {n} too large"))),
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reader(bytes: &[u8]) -> RespReader<&[u8]> {
        RespReader::new(bytes)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn resp2_shapes() {
        block_on(async {
            let mut r = reader(b"*3\r\n$5\r\nhello\r\n:42\r\n+OK\r\n$-1\r\n*-1\r\n-ERR bad\r\n");
            assert_eq!(r.header().await.unwrap(), Header::Array(3));
            assert_eq!(r.header().await.unwrap(), Header::Bulk(5));
            assert_eq!(r.bulk(5, 10, 0).await.unwrap().kept, b"hello");
            assert_eq!(r.header().await.unwrap(), Header::Int(42));
            assert_eq!(r.header().await.unwrap(), Header::Line(b"OK".to_vec()));
            assert_eq!(r.header().await.unwrap(), Header::Nil);
            assert_eq!(r.header().await.unwrap(), Header::Nil);
            assert_eq!(
                r.header().await.unwrap(),
                Header::Error("ERR bad".to_string())
            );
            assert!(matches!(r.header().await, Err(RespError::Closed)));
        });
    }

    #[test]
    fn resp3_shapes() {
        block_on(async {
            let mut r = reader(
                b"%1\r\n$1\r\nk\r\n~2\r\n_\r\n#t\r\n|1\r\n+a\r\n*1\r\n:1\r\n,1.5\r\n(12\r\n=7\r\ntxt:abc\r\n>1\r\n+p\r\n!3\r\nERR\r\n",
            );
            assert_eq!(r.header().await.unwrap(), Header::Map(1));
            assert_eq!(r.short(10, "key").await.unwrap(), b"k");
            assert_eq!(r.header().await.unwrap(), Header::Array(2));
            assert_eq!(r.header().await.unwrap(), Header::Nil);
            assert_eq!(r.header().await.unwrap(), Header::Line(b"t".to_vec()));
            // The attribute (|1 with one key/value pair) is skipped.
            assert_eq!(r.header().await.unwrap(), Header::Line(b"1.5".to_vec()));
            assert_eq!(r.header().await.unwrap(), Header::Line(b"12".to_vec()));
            assert_eq!(r.header().await.unwrap(), Header::Bulk(7));
            r.discard(7).await.unwrap();
            assert_eq!(r.header().await.unwrap(), Header::Array(1));
            assert_eq!(r.header().await.unwrap(), Header::Line(b"p".to_vec()));
            assert_eq!(r.header().await.unwrap(), Header::Error("ERR".into()));
        });
    }

    #[test]
    fn long_bulk_keeps_a_prefix_its_length_and_sha256() {
        let value = vec![b'z'; 100_000];
        let mut bytes = format!("${}\r\n", value.len()).into_bytes();
        bytes.extend_from_slice(&value);
        bytes.extend_from_slice(b"\r\n:7\r\n");
        block_on(async {
            // A small buffer: the value arrives in many pieces.
            let mut r = RespReader::new(tokio::io::BufReader::with_capacity(100, &bytes[..]));
            let Header::Bulk(n) = r.header().await.unwrap() else {
                panic!()
            };
            let bulk = r.bulk(n, 1000, 16).await.unwrap();
            assert_eq!(bulk.kept, vec![b'z'; 16]);
            assert!(bulk.kept.capacity() <= 16);
            assert_eq!(bulk.len, 100_000);
            assert_eq!(bulk.sha256, Some(Sha256::digest(&value).into()));
            assert_eq!(r.header().await.unwrap(), Header::Int(7));
        });
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        block_on(async {
            let bytes = b"*2\r\n$12345\r\n:-7\r\n";
            let mut r = RespReader::new(tokio::io::BufReader::with_capacity(3, &bytes[..]));
            assert_eq!(r.header().await.unwrap(), Header::Array(2));
            assert_eq!(r.header().await.unwrap(), Header::Bulk(12345));
            let mut r = RespReader::new(tokio::io::BufReader::with_capacity(2, &b":-7\r\n"[..]));
            assert_eq!(r.header().await.unwrap(), Header::Int(-7));
        });
    }

    #[test]
    fn skip_reads_past_nested_values() {
        block_on(async {
            let mut r = reader(b"*2\r\n*2\r\n$3\r\nabc\r\n%1\r\n+k\r\n:1\r\n$-1\r\n:9\r\n");
            r.skip().await.unwrap();
            assert_eq!(r.header().await.unwrap(), Header::Int(9));
        });
    }

    #[test]
    fn malformed_input_is_an_error() {
        block_on(async {
            for bad in [
                &b"?1\r\n"[..],
                b"$3\r\nabcd\r\n",
                b"*-2\r\n",
                b":x\r\n",
                b"+no-cr\n",
                b"$99999999999999999999\r\n",
            ] {
                let mut r = reader(bad);
                let result = match r.header().await {
                    Ok(Header::Bulk(n)) => r.bulk(n, 10, 0).await.map(|_| ()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                assert!(result.is_err(), "{:?}", String::from_utf8_lossy(bad));
            }
        });
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            encode_command(&["PING", "a b"]),
            b"*2\r\n$4\r\nPING\r\n$3\r\na b\r\n"
        );
    }

    /// Reads values until the input ends or is malformed, keeping every bulk string within
    /// `bound`; returns the largest capacity held.
    async fn read_all(bytes: &[u8], bound: usize) -> usize {
        let mut r = reader(bytes);
        let mut largest = 0;
        for _ in 0..10_000 {
            match r.header().await {
                Ok(Header::Bulk(n)) => match r.bulk(n, bound, bound / 2).await {
                    Ok(b) => largest = largest.max(b.kept.capacity()),
                    Err(_) => return largest,
                },
                Ok(_) => {}
                Err(_) => return largest,
            }
        }
        largest
    }

    #[test]
    fn decimal_reads_the_edges_as_str_parse_does() {
        for text in [
            "0",
            "-0",
            "+7",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert_eq!(decimal(text.as_bytes()), text.parse::<i64>().ok(), "{text}");
        }
        for text in [
            "",
            "-",
            "+",
            "9223372036854775808",
            "-9223372036854775809",
            "1 ",
            "0x1",
            "--1",
        ] {
            assert_eq!(decimal(text.as_bytes()), None, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn decimal_agrees_with_str_parse(bytes in proptest::collection::vec(
            prop_oneof![Just(b'-'), Just(b'+'), b'0'..=b'9', any::<u8>()], 0..24)
        ) {
            let expected = std::str::from_utf8(&bytes).ok().and_then(|s| s.parse::<i64>().ok());
            prop_assert_eq!(decimal(&bytes), expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_exceed_the_bound(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let largest = block_on(read_all(&bytes, 64));
            prop_assert!(largest <= 64);
        }

        #[test]
        fn arbitrary_resp_like_input_never_panics(parts in proptest::collection::vec(
            prop_oneof![
                Just(b"*2\r\n".to_vec()), Just(b"%1\r\n".to_vec()), Just(b"$5\r\n".to_vec()),
                Just(b"$100000\r\n".to_vec()), Just(b"hello\r\n".to_vec()), Just(b"_\r\n".to_vec()),
                Just(b"|1\r\n".to_vec()), Just(b"!2\r\n".to_vec()), Just(b"*-1\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..16),
            ], 0..64)) {
            let bytes = parts.concat();
            let largest = block_on(read_all(&bytes, 64));
            prop_assert!(largest <= 64);
            let mut r = reader(&bytes);
            let _ = block_on(r.skip());
        }
    }
}
