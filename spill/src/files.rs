//! File names in the spill directory and the few durable-filesystem helpers
//! the store needs (directory fsync, atomic cursor replacement).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::codec::{self, CURSOR_LEN};
use crate::error::{io_err, SpillError};

pub const SEGMENT_EXT: &str = ".seg";
pub const CORRUPT_EXT: &str = ".corrupt";
pub const CURSOR_FILE: &str = "cursor";
pub const CURSOR_TMP_FILE: &str = "cursor.tmp";
pub const LOCK_FILE: &str = "LOCK";
/// Records that passed their checksum but that this build cannot decode are
/// moved to `quarantine-<segment seq>-<offset>.rec` (the raw record bytes).
pub const QUARANTINE_PREFIX: &str = "quarantine-";
pub const QUARANTINE_EXT: &str = ".rec";
/// Suffix of a quarantine file being written (removed at open).
pub const TMP_EXT: &str = ".tmp";
/// Largest segment sequence number the store reads or writes.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// `00000000000000000042.seg`: zero-padded so lexical order is numeric order.
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_EXT}")
}

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// What a directory entry is, judged by its name only.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    Segment(u64),
    /// A quarantined file; its sequence still counts so numbers never repeat.
    Corrupt(u64),
    Other,
}

pub fn classify(name: &str) -> Entry {
    let seq = name
        .get(..20)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u64>().ok())
        // Numbers above i64::MAX are never written by the store; refusing them
        // keeps every `seq + 1` in the store free of overflow.
        .filter(|&s| s <= MAX_SEQ);
    let rest = name.get(20..).unwrap_or("");
    match seq {
        Some(seq) if rest == SEGMENT_EXT => Entry::Segment(seq),
        Some(seq) if rest.starts_with(SEGMENT_EXT) && rest.ends_with(CORRUPT_EXT) => {
            Entry::Corrupt(seq)
        }
        _ => Entry::Other,
    }
}

/// A free quarantine name for segment `seq`: `<seg>.corrupt`, then
/// `<seg>.1.corrupt`, ... so an earlier piece of evidence is never overwritten.
pub fn corrupt_path(dir: &Path, seq: u64) -> PathBuf {
    let base = segment_file_name(seq);
    let first = dir.join(format!("{base}{CORRUPT_EXT}"));
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| dir.join(format!("{base}.{n}{CORRUPT_EXT}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Whether `name` is a quarantined record (`quarantine-….rec`).
pub fn is_quarantine_file(name: &str) -> bool {
    name.starts_with(QUARANTINE_PREFIX) && name.ends_with(QUARANTINE_EXT)
}

/// Whether `name` is a quarantine file whose write was interrupted.
pub fn is_quarantine_tmp(name: &str) -> bool {
    name.starts_with(QUARANTINE_PREFIX) && name.ends_with(TMP_EXT)
}

/// Quarantined records in `dir`, in name order (= order of their segments).
pub fn quarantine_files(dir: &Path) -> Result<Vec<PathBuf>, SpillError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if entry.file_name().to_str().is_some_and(is_quarantine_file) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Durably writes `data` to a quarantine file for the record at `offset` of
/// segment `seq` and returns its path. The file appears complete or not at
/// all (temp file, fsync, rename, directory fsync). An existing file with the
/// same bytes is reused (the record was quarantined before a crash cut its
/// commit); one with other bytes is never overwritten.
pub fn write_quarantine(
    dir: &Path,
    seq: u64,
    offset: u64,
    data: &[u8],
) -> Result<PathBuf, SpillError> {
    let base = format!("{QUARANTINE_PREFIX}{seq:020}-{offset:012}");
    let mut path = dir.join(format!("{base}{QUARANTINE_EXT}"));
    for n in 1u32.. {
        match fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_err("read", &path)(e)),
            Ok(existing) if existing == data => return Ok(path),
            Ok(_) => path = dir.join(format!("{base}.{n}{QUARANTINE_EXT}")),
        }
    }
    let mut tmp = path.clone().into_os_string();
    tmp.push(TMP_EXT);
    replace_durably(dir, Path::new(&tmp), &path, data)?;
    Ok(path)
}

/// Durably puts `data` at `path` in `dir`: write it to `tmp`, fsync it, rename it over `path`,
/// fsync the directory. After this returns the new content survives a crash; before, the old
/// content (or none) does.
fn replace_durably(dir: &Path, tmp: &Path, path: &Path, data: &[u8]) -> Result<(), SpillError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(io_err("create", tmp))?;
    f.write_all(data).map_err(io_err("write", tmp))?;
    f.sync_all().map_err(io_err("fsync", tmp))?;
    fs::rename(tmp, path).map_err(io_err("rename", path))?;
    sync_dir(dir)
}

/// Makes creations, renames and unlinks in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), SpillError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", dir))
}

/// Reads the cursor. A missing or damaged cursor means 0 ("nothing known to be
/// committed"): that can only cause re-delivery, never loss.
pub fn read_cursor(dir: &Path) -> Result<u64, SpillError> {
    let path = dir.join(CURSOR_FILE);
    let mut buf = Vec::with_capacity(CURSOR_LEN);
    match File::open(&path) {
        Ok(f) => {
            f.take(CURSOR_LEN as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(io_err("read", &path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("open", &path)(e)),
    }
    let decoded = <[u8; CURSOR_LEN]>::try_from(buf.as_slice())
        .map_err(|_| codec::Damage::BadMagic)
        .and_then(|h| codec::decode_cursor(&h));
    match decoded {
        Ok(seq) => Ok(seq),
        Err(damage) => {
            tracing::warn!(path = %path.display(), %damage, "spill cursor damaged; replaying every segment present");
            Ok(0)
        }
    }
}

/// Durably replaces the cursor (through a temp file, see [`replace_durably`]). After this
/// returns the new value survives a crash; before, the old value does.
pub fn write_cursor(dir: &Path, next_live: u64) -> Result<(), SpillError> {
    replace_durably(
        dir,
        &dir.join(CURSOR_TMP_FILE),
        &dir.join(CURSOR_FILE),
        &codec::encode_cursor(next_live),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(7), "00000000000000000007.seg");
        assert_eq!(
            classify(&segment_file_name(MAX_SEQ)),
            Entry::Segment(MAX_SEQ)
        );
        assert_eq!(classify(&segment_file_name(MAX_SEQ + 1)), Entry::Other);
        assert_eq!(
            classify("00000000000000000007.seg.corrupt"),
            Entry::Corrupt(7)
        );
        assert_eq!(
            classify("00000000000000000007.seg.3.corrupt"),
            Entry::Corrupt(7)
        );
        assert_eq!(classify("00000000000000000007.segx"), Entry::Other);
        assert_eq!(classify("cursor"), Entry::Other);
        assert_eq!(classify("99999999999999999999.seg"), Entry::Other); // > u64::MAX
        assert_eq!(classify("é"), Entry::Other);
        let q = "quarantine-00000000000000000007-000000000024.rec";
        assert_eq!(classify(q), Entry::Other);
        assert!(is_quarantine_file(q) && !is_quarantine_tmp(q));
        assert!(is_quarantine_tmp(&format!("{q}.tmp")));
    }

    #[test]
    fn quarantine_files_are_durable_reused_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_quarantine(dir.path(), 7, 24, b"one").unwrap();
        assert_eq!(
            p.file_name().unwrap(),
            "quarantine-00000000000000000007-000000000024.rec"
        );
        assert_eq!(fs::read(&p).unwrap(), b"one");
        // Same record again (crash before its commit): same file.
        assert_eq!(write_quarantine(dir.path(), 7, 24, b"one").unwrap(), p);
        // Other bytes at the same place (sequence reused after a lost cursor).
        let p2 = write_quarantine(dir.path(), 7, 24, b"two").unwrap();
        assert_ne!(p2, p);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(fs::read(&p2).unwrap(), b"two");
        fs::write(dir.path().join("unrelated.rec"), b"x").unwrap();
        let mut both = vec![p, p2];
        both.sort();
        assert_eq!(quarantine_files(dir.path()).unwrap(), both);
    }

    #[test]
    fn cursor_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_cursor(dir.path()).unwrap(), 0);
        write_cursor(dir.path(), 9).unwrap();
        assert_eq!(read_cursor(dir.path()).unwrap(), 9);
        fs::write(dir.path().join(CURSOR_FILE), b"garbage").unwrap();
        assert_eq!(read_cursor(dir.path()).unwrap(), 0);
    }
}
