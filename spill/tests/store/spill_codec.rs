//! Property tests of the spill record codec: round trip, and no truncation or
//! corruption ever yields a wrong record or a panic.

use fdc_spill::codec::{self, ScanEnd};
use proptest::prelude::*;

fn encode_all(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut body = Vec::new();
    let mut starts = Vec::new();
    for p in payloads {
        starts.push(body.len());
        codec::encode_record(p, &mut body);
    }
    (body, starts)
}

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..20)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(ps in payloads()) {
        let (body, _) = encode_all(&ps);
        let scan = codec::scan_body(&body);
        prop_assert_eq!(scan.end, ScanEnd::Clean);
        prop_assert_eq!(scan.valid_len, body.len() as u64);
        prop_assert_eq!(scan.records, ps);
    }

    /// Cutting the body anywhere yields exactly the records wholly before the
    /// cut; a cut inside a frame is reported as torn at that frame's start.
    #[test]
    fn truncation_yields_the_complete_prefix(ps in payloads(), cut in any::<prop::sample::Index>()) {
        let (body, starts) = encode_all(&ps);
        let cut = cut.index(body.len() + 1);
        let scan = codec::scan_body(&body[..cut]);
        let whole = starts.iter().zip(&ps)
            .take_while(|(s, p)| **s as u64 + codec::frame_len(p.len() as u64) <= cut as u64)
            .count();
        prop_assert_eq!(&scan.records[..], &ps[..whole]);
        let boundary = starts.get(whole).copied().unwrap_or(body.len());
        prop_assert_eq!(scan.valid_len, boundary as u64);
        if cut == boundary {
            prop_assert_eq!(scan.end, ScanEnd::Clean);
        } else {
            prop_assert_eq!(scan.end, ScanEnd::Torn);
        }
    }

    /// Flipping bytes: every record before the first damaged frame is read,
    /// nothing from the damaged frame on, and the damage is reported.
    #[test]
    fn corruption_never_yields_a_wrong_record(
        ps in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..20),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..8),
    ) {
        let (mut body, starts) = encode_all(&ps);
        let original = body.clone();
        for (at, mask) in &flips {
            let at = at.index(body.len());
            body[at] ^= mask;
        }
        // Two flips of one byte can cancel out: judge by the real difference.
        let first = body.iter().zip(&original).position(|(a, b)| a != b);
        prop_assume!(first.is_some());
        let first = first.unwrap_or_default();
        let damaged_frame = starts.iter().rposition(|s| *s <= first).unwrap();
        let scan = codec::scan_body(&body);
        prop_assert_eq!(&scan.records[..], &ps[..damaged_frame]);
        prop_assert_eq!(scan.valid_len, starts[damaged_frame] as u64);
        prop_assert_ne!(scan.end, ScanEnd::Clean);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let scan = codec::scan_body(&bytes);
        prop_assert!(scan.valid_len <= bytes.len() as u64);
        let mut h = [0u8; codec::SEGMENT_HEADER_LEN];
        let n = bytes.len().min(h.len());
        h[..n].copy_from_slice(&bytes[..n]);
        let _ = codec::decode_segment_header(&h);
        let _ = codec::decode_cursor(&h);
    }

    #[test]
    fn headers_round_trip(seq in any::<u64>()) {
        prop_assert_eq!(codec::decode_segment_header(&codec::encode_segment_header(seq)), Ok(seq));
        prop_assert_eq!(codec::decode_cursor(&codec::encode_cursor(seq)), Ok(seq));
    }
}
