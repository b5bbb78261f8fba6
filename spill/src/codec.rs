//! On-disk encoding of spill segments: the segment header, the record frame and
//! the replay-position ("cursor") file. Pure functions over bytes plus one
//! streaming frame reader, so the format can be property-tested without files.
//! The byte layout is documented in `docs/spill.md`; keep both in sync.

use std::io::{self, Read};

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FDCSPILL";
/// First 8 bytes of the cursor file.
pub const CURSOR_MAGIC: [u8; 8] = *b"FDCSPCUR";
/// Format version written into segment and cursor headers. A reader refuses
/// (quarantines) any other version rather than guessing.
pub const FORMAT_VERSION: u16 = 1;
/// magic(8) + version(2) + flags(2) + seq(8) + crc(4).
pub const SEGMENT_HEADER_LEN: usize = 24;
/// Same layout as the segment header, with the cursor magic.
pub const CURSOR_LEN: usize = 24;
/// len(4) + payload crc(4) + header crc(4).
pub const RECORD_HEADER_LEN: usize = 12;
/// Largest payload a frame can describe (the length field is a u32).
pub const MAX_PAYLOAD_LEN: u64 = u32::MAX as u64;

/// Why a header or frame was rejected. Carried into logs, never panicked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    BadMagic,
    BadVersion(u16),
    BadHeaderChecksum,
    /// The header is valid but names another segment than the file name.
    WrongSequence {
        expected: u64,
        found: u64,
    },
    BadFrameChecksum,
    BadPayloadChecksum,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::BadMagic => write!(f, "bad magic"),
            Damage::BadVersion(v) => write!(f, "unsupported format version {v}"),
            Damage::BadHeaderChecksum => write!(f, "header checksum mismatch"),
            Damage::WrongSequence { expected, found } => {
                write!(f, "header names segment {found}, file name says {expected}")
            }
            Damage::BadFrameChecksum => write!(f, "record header checksum mismatch"),
            Damage::BadPayloadChecksum => write!(f, "record payload checksum mismatch"),
        }
    }
}

fn encode_header(magic: [u8; 8], seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&magic);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // bytes 10..12: flags, reserved, zero in version 1.
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

fn decode_header(magic: [u8; 8], h: &[u8; SEGMENT_HEADER_LEN]) -> Result<u64, Damage> {
    if h[0..8] != magic {
        return Err(Damage::BadMagic);
    }
    let crc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if crc32c::crc32c(&h[0..20]) != crc {
        return Err(Damage::BadHeaderChecksum);
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(Damage::BadVersion(version));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&h[12..20]);
    Ok(u64::from_le_bytes(seq))
}

/// Header written at offset 0 of segment `seq`.
pub fn encode_segment_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    encode_header(SEGMENT_MAGIC, seq)
}

/// Validates a segment header and returns the sequence number it names.
pub fn decode_segment_header(h: &[u8; SEGMENT_HEADER_LEN]) -> Result<u64, Damage> {
    decode_header(SEGMENT_MAGIC, h)
}

/// Cursor file content: "every segment with a sequence below `next_live` is
/// fully committed and may be deleted".
pub fn encode_cursor(next_live: u64) -> [u8; CURSOR_LEN] {
    encode_header(CURSOR_MAGIC, next_live)
}

pub fn decode_cursor(h: &[u8; CURSOR_LEN]) -> Result<u64, Damage> {
    decode_header(CURSOR_MAGIC, h)
}

/// Bytes a payload of `len` bytes occupies on disk.
pub fn frame_len(payload_len: u64) -> u64 {
    RECORD_HEADER_LEN as u64 + payload_len
}

/// Appends one record frame to `out`. The caller guarantees
/// `payload.len() <= MAX_PAYLOAD_LEN` (the store checks before encoding).
pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() as u64 <= MAX_PAYLOAD_LEN);
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    // The frame header has its own checksum so a flipped length byte is seen
    // as corruption instead of being mistaken for a torn (incomplete) tail.
    let hcrc = crc32c::crc32c(&h[0..8]);
    h[8..12].copy_from_slice(&hcrc.to_le_bytes());
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

/// Result of reading one frame from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A valid record; `frame_len` bytes were consumed.
    Record { payload: Vec<u8>, frame_len: u64 },
    /// Clean end: no byte left.
    End,
    /// The stream ended inside a frame: a torn write.
    Incomplete,
    /// A complete but invalid frame.
    Corrupt(Damage),
}

/// Reads exactly `buf.len()` bytes unless the stream ends first; returns how
/// many were read (unlike `read_exact`, which loses that count).
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads the next frame from `r`, which must yield at most `remaining` bytes
/// (the valid length of the segment from the current offset). The payload is
/// allocated only after the frame header checksum is verified and the length
/// fits in `remaining`, so garbage can never trigger a huge allocation.
pub fn read_frame<R: Read>(r: &mut R, remaining: u64) -> io::Result<Frame> {
    if remaining == 0 {
        return Ok(Frame::End);
    }
    let mut h = [0u8; RECORD_HEADER_LEN];
    let want = (RECORD_HEADER_LEN as u64).min(remaining) as usize;
    let got = read_full(r, &mut h[..want])?;
    if got < RECORD_HEADER_LEN {
        // `remaining > 0` promised more bytes: a partial header is torn.
        return Ok(Frame::Incomplete);
    }
    let hcrc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if crc32c::crc32c(&h[0..8]) != hcrc {
        return Ok(Frame::Corrupt(Damage::BadFrameChecksum));
    }
    let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    let pcrc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > remaining - RECORD_HEADER_LEN as u64 {
        return Ok(Frame::Incomplete);
    }
    let mut payload = vec![0u8; len as usize];
    if (read_full(r, &mut payload)? as u64) < len {
        return Ok(Frame::Incomplete);
    }
    if crc32c::crc32c(&payload) != pcrc {
        return Ok(Frame::Corrupt(Damage::BadPayloadChecksum));
    }
    Ok(Frame::Record {
        payload,
        frame_len: frame_len(len),
    })
}

/// How a scan of a segment body ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belonged to a valid record.
    Clean,
    /// A torn write from `valid_len` on: incomplete frame or all-zero tail.
    Torn,
    /// Damage at `valid_len` that is not explained by a torn write.
    Corrupt(Damage),
}

/// Summary of scanning a segment body (everything after the header).
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    /// Valid records, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of the body covered by valid records.
    pub valid_len: u64,
    pub end: ScanEnd,
}

/// Scans an in-memory segment body. Used by tests and tools; the store scans
/// files with [`read_frame`] directly to avoid holding a segment in memory.
pub fn scan_body(body: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut off = 0u64;
    let total = body.len() as u64;
    loop {
        let mut r = &body[off as usize..];
        // Reading from a slice cannot fail.
        let frame = read_frame(&mut r, total - off).unwrap_or(Frame::Incomplete);
        match frame {
            Frame::Record { payload, frame_len } => {
                records.push(payload);
                off += frame_len;
            }
            Frame::End => {
                return Scan {
                    records,
                    valid_len: off,
                    end: ScanEnd::Clean,
                }
            }
            Frame::Incomplete => {
                return Scan {
                    records,
                    valid_len: off,
                    end: ScanEnd::Torn,
                }
            }
            Frame::Corrupt(d) => {
                let end = if body[off as usize..].iter().all(|&b| b == 0) {
                    ScanEnd::Torn
                } else {
                    ScanEnd::Corrupt(d)
                };
                return Scan {
                    records,
                    valid_len: off,
                    end,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_spill_budget_holds_a_segment_header_and_a_one_byte_record() {
        assert_eq!(
            fdc_common::config::spill::MIN_MAX_BYTES,
            (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN) as u64 + 1
        );
    }

    #[test]
    fn header_round_trip_and_rejections() {
        let h = encode_segment_header(42);
        assert_eq!(decode_segment_header(&h), Ok(42));
        // A cursor is not a segment header and vice versa.
        assert_eq!(decode_cursor(&h), Err(Damage::BadMagic));
        let mut bad = h;
        bad[13] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(Damage::BadHeaderChecksum));
        let mut v2 = h;
        v2[8] = 2;
        let crc = crc32c::crc32c(&v2[0..20]);
        v2[20..24].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&v2), Err(Damage::BadVersion(2)));
    }

    #[test]
    fn frame_layout_is_documented_layout() {
        let mut out = Vec::new();
        encode_record(b"abc", &mut out);
        assert_eq!(out.len(), 15);
        assert_eq!(&out[0..4], &3u32.to_le_bytes());
        assert_eq!(&out[4..8], &crc32c::crc32c(b"abc").to_le_bytes());
        assert_eq!(&out[8..12], &crc32c::crc32c(&out[0..8]).to_le_bytes());
        assert_eq!(&out[12..], b"abc");
    }

    #[test]
    fn scan_classifies_tails() {
        let mut body = Vec::new();
        encode_record(b"one", &mut body);
        encode_record(b"", &mut body);
        encode_record(b"three", &mut body);
        let full = scan_body(&body);
        assert_eq!(
            full.records,
            vec![b"one".to_vec(), vec![], b"three".to_vec()]
        );
        assert_eq!(full.end, ScanEnd::Clean);

        let torn = scan_body(&body[..body.len() - 1]);
        assert_eq!(torn.records.len(), 2);
        assert_eq!(torn.valid_len, 15 + 12);
        assert_eq!(torn.end, ScanEnd::Torn);

        let mut zeros = body.clone();
        zeros.extend_from_slice(&[0u8; 40]);
        let z = scan_body(&zeros);
        assert_eq!(z.records.len(), 3);
        assert_eq!(z.end, ScanEnd::Torn);

        let mut flipped = body.clone();
        flipped[13] ^= 0x80; // payload of "one"
        let c = scan_body(&flipped);
        assert!(c.records.is_empty());
        assert_eq!(c.end, ScanEnd::Corrupt(Damage::BadPayloadChecksum));

        let mut len_flip = body.clone();
        len_flip[15 + 12 + 1] = 0xff; // length of "three" -> huge
        let l = scan_body(&len_flip);
        assert_eq!(l.records.len(), 2);
        assert_eq!(l.end, ScanEnd::Corrupt(Damage::BadFrameChecksum));
    }
}
