//! Validating segment files and putting damage aside. Used when the store
//! opens (every segment is scanned) and when replay meets damage that
//! appeared later. Nothing in here trusts file content: every length is
//! checked against the real file size and every frame against its checksums.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::codec::{self, Damage, Frame, ScanEnd, SEGMENT_HEADER_LEN};
use crate::error::{io_err, SpillError};
use crate::files;

const HEADER: u64 = SEGMENT_HEADER_LEN as u64;

/// Outcome of scanning one segment file.
#[derive(Debug)]
pub enum FileScan {
    /// The header is valid; `valid_len` bytes (header included) hold
    /// `records` valid records, and `end` says what follows them.
    Body {
        valid_len: u64,
        file_len: u64,
        records: u64,
        end: ScanEnd,
    },
    /// The file is shorter than a header or its header is all zeros: the
    /// segment was being created when the process died. Appends only succeed
    /// after the header is durable, so it never held an acknowledged record.
    TornHeader,
    /// The header is present but invalid.
    BadHeader(Damage),
}

pub fn scan_file(path: &Path, seq: u64) -> Result<FileScan, SpillError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let file_len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut r = BufReader::with_capacity(256 * 1024, file);
    if file_len < HEADER {
        return Ok(FileScan::TornHeader);
    }
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    r.read_exact(&mut h).map_err(io_err("read", path))?;
    if h.iter().all(|&b| b == 0) {
        return Ok(FileScan::TornHeader);
    }
    match codec::decode_segment_header(&h) {
        Ok(found) if found != seq => {
            return Ok(FileScan::BadHeader(Damage::WrongSequence {
                expected: seq,
                found,
            }))
        }
        Ok(_) => {}
        Err(d) => return Ok(FileScan::BadHeader(d)),
    }
    let mut off = HEADER;
    let mut records = 0u64;
    let end = loop {
        match codec::read_frame(&mut r, file_len - off).map_err(io_err("read", path))? {
            Frame::Record { frame_len, .. } => {
                off += frame_len;
                records += 1;
            }
            Frame::End => break ScanEnd::Clean,
            Frame::Incomplete => break ScanEnd::Torn,
            Frame::Corrupt(d) => {
                // A crash can leave a zero-filled tail (the size was persisted
                // before the data): that is a torn write, not corruption.
                if zeros_from(path, off)? {
                    break ScanEnd::Torn;
                }
                break ScanEnd::Corrupt(d);
            }
        }
    };
    Ok(FileScan::Body {
        valid_len: off,
        file_len,
        records,
        end,
    })
}

/// True if every byte of the file from `off` on is zero.
fn zeros_from(path: &Path, off: u64) -> Result<bool, SpillError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    f.seek(SeekFrom::Start(off)).map_err(io_err("seek", path))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// Cuts a torn tail: the segment keeps its first `valid_len` bytes.
pub fn truncate(path: &Path, valid_len: u64) -> Result<(), SpillError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    f.set_len(valid_len).map_err(io_err("truncate", path))?;
    f.sync_all().map_err(io_err("fsync", path))
}

/// Moves damage aside and keeps the valid prefix replayable.
///
/// If the segment has valid records (`valid_len > header`), a byte-exact copy
/// of the whole damaged file is made durable as `*.corrupt` first (evidence
/// for the operator), and only then the segment is truncated to its valid
/// prefix. A crash in between repeats the copy under a new name at the next
/// open; it never loses the prefix. Without valid records the file itself is
/// renamed. Returns the quarantine path and whether the segment still exists.
pub fn quarantine(dir: &Path, seq: u64, valid_len: u64) -> Result<(PathBuf, bool), SpillError> {
    let path = files::segment_path(dir, seq);
    let aside = files::corrupt_path(dir, seq);
    if valid_len <= HEADER {
        fs::rename(&path, &aside).map_err(io_err("rename", &aside))?;
        files::sync_dir(dir)?;
        return Ok((aside, false));
    }
    fs::copy(&path, &aside).map_err(io_err("copy", &aside))?;
    File::open(&aside)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync", &aside))?;
    files::sync_dir(dir)?;
    truncate(&path, valid_len)?;
    Ok((aside, true))
}
