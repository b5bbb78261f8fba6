//! Encoder for Postgres's binary `COPY` format: the cheapest way to hand rows to the server
//! (no SQL text, no per-row parsing of numbers or uuids). Used by the batch write's staging
//! table and by the benchmark's storage-limit run.
//!
//! Format (Postgres docs, "COPY … Binary Format"): a fixed header, then per row a 16-bit
//! field count and per field a 32-bit length (-1 for NULL) followed by the value in the type's
//! binary send format, then a 16-bit -1 trailer.

use uuid::Uuid;

/// `PGCOPY\n\377\r\n\0`, flags (no OIDs), header extension length 0.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Microseconds from the Unix epoch to Postgres's epoch, 2000-01-01 UTC.
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A buffer of binary COPY data; [`CopyBinary::finish`] returns the bytes to send.
pub struct CopyBinary {
    buf: Vec<u8>,
}

impl CopyBinary {
    /// An empty COPY stream with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> CopyBinary {
        let mut buf = Vec::with_capacity(capacity + HEADER.len() + 2);
        buf.extend_from_slice(HEADER);
        CopyBinary { buf }
    }

    /// Starts a row of `fields` values; exactly that many value calls must follow.
    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub fn uuid(&mut self, id: &Uuid) {
        self.buf.extend_from_slice(&16i32.to_be_bytes());
        self.buf.extend_from_slice(id.as_bytes());
    }

    pub fn opt_uuid(&mut self, id: Option<&Uuid>) {
        match id {
            Some(id) => self.uuid(id),
            None => self.null(),
        }
    }

    pub fn int8(&mut self, value: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    /// A `timestamptz` given as microseconds since the Unix epoch.
    pub fn timestamptz_unix_micros(&mut self, unix_us: i64) {
        self.int8(unix_us - PG_EPOCH_OFFSET_US);
    }

    /// A one-dimensional `bigint[]` without NULLs (array send format: dimensions, null flag,
    /// element type, then each dimension's length and lower bound, then the elements).
    pub fn int8_array(&mut self, values: &[i64]) {
        const INT8_OID: i32 = 20;
        let n = i32::try_from(values.len()).expect("array longer than 2^31");
        self.buf.extend_from_slice(&(20 + 12 * n).to_be_bytes());
        for header in [1, 0, INT8_OID, n, 1] {
            self.buf.extend_from_slice(&header.to_be_bytes());
        }
        for v in values {
            self.int8(*v);
        }
    }

    /// `text` (also fits `citext` and `varchar`): UTF-8 bytes as they are.
    pub fn text(&mut self, value: &str) {
        self.bytes_field(&[], value.as_bytes());
    }

    /// `jsonb`: a version byte (1) and the JSON text. The server parses the text, so it must
    /// be valid JSON; the kernel only passes payloads its protocol parser accepted.
    pub fn jsonb(&mut self, json: &str) {
        self.bytes_field(&[1], json.as_bytes());
    }

    fn bytes_field(&mut self, prefix: &[u8], value: &[u8]) {
        let len = prefix.len() + value.len();
        // A COPY field is at most 1 GiB; entries are limited far below that.
        let len = i32::try_from(len).expect("COPY field larger than 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(prefix);
        self.buf.extend_from_slice(value);
    }

    /// The complete stream, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_header_rows_and_trailer() {
        let mut copy = CopyBinary::with_capacity(0);
        copy.row(3);
        copy.int8(1);
        copy.null();
        copy.jsonb("{}");
        let bytes = copy.finish();
        let mut want = HEADER.to_vec();
        want.extend_from_slice(&[0, 3]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[0, 0, 0, 3, 1, b'{', b'}']);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, want);
        assert_eq!(HEADER.len(), 19);
    }

    #[test]
    fn timestamps_count_from_2000() {
        let mut copy = CopyBinary::with_capacity(0);
        copy.timestamptz_unix_micros(946_684_800_000_001);
        let bytes = copy.finish();
        assert_eq!(&bytes[19..31], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn int8_arrays_carry_one_dimension_and_their_elements() {
        let mut copy = CopyBinary::with_capacity(0);
        copy.int8_array(&[7, -1]);
        let bytes = copy.finish();
        let mut want = vec![0, 0, 0, 44];
        for word in [1i32, 0, 20, 2, 1] {
            want.extend_from_slice(&word.to_be_bytes());
        }
        for v in [7i64, -1] {
            want.extend_from_slice(&[0, 0, 0, 8]);
            want.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(&bytes[19..bytes.len() - 2], &want[..]);
    }
}
