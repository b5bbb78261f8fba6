//! The spill store: durable append, ordered replay, commit-driven deletion.
//!
//! Blocking I/O. Call it from `tokio::task::spawn_blocking`, or use
//! [`crate::SpillHandle`], which does that for you.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::codec::{self, Frame, ScanEnd, MAX_PAYLOAD_LEN, SEGMENT_HEADER_LEN};
use crate::error::{io_err, SpillError};
use crate::files::{self, Entry};
use crate::metrics::SpillMetrics;
use crate::recovery::{self, FileScan};
use fdc_common::config::spill::SpillConfig;

const HEADER: u64 = SEGMENT_HEADER_LEN as u64;

/// Where a record lives. Ordered like the replay order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    segment: u64,
    offset: u64,
    end: u64,
    /// Position of the record within its segment (0-based).
    index: u64,
}

impl RecordId {
    /// Sequence number of the segment file holding the record.
    pub fn segment(&self) -> u64 {
        self.segment
    }
    /// Byte offset of the record frame in the segment file.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Byte offset just past the record frame.
    pub fn end(&self) -> u64 {
        self.end
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}",
            files::segment_file_name(self.segment),
            self.offset
        )
    }
}

/// A record delivered for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: RecordId,
    pub data: Vec<u8>,
}

/// What recovery found when the store was opened.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Live segments after recovery.
    pub segments: u64,
    /// Records waiting for replay.
    pub records: u64,
    /// Torn writes cut off (including segments that died while being created).
    pub torn_tails: u64,
    /// Segments whose damage was moved aside.
    pub corrupt_segments: u64,
    /// Paths of the `*.corrupt` files created by this recovery.
    pub quarantined: Vec<PathBuf>,
    /// Already committed segments whose deletion had been interrupted.
    pub removed_committed: u64,
}

/// Point-in-time numbers, for tests and logs (metrics carry the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpillStats {
    pub bytes: u64,
    pub max_bytes: u64,
    pub segments: u64,
    pub pending_records: u64,
}

#[derive(Debug, Clone, Copy)]
struct SegmentInfo {
    /// Bytes known valid (header included). Never read past this.
    len: u64,
    records: u64,
}

/// A position between records: the record starting at `offset` in segment
/// `seq`, which is the `index`-th of that segment. `seq` may name a segment
/// that no longer exists; readers then move on to the next live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    seq: u64,
    offset: u64,
    index: u64,
}

impl Pos {
    fn start_of(seq: u64) -> Self {
        Pos {
            seq,
            offset: HEADER,
            index: 0,
        }
    }
}

struct Active {
    seq: u64,
    file: File,
}

struct Reader {
    seq: u64,
    offset: u64,
    file: BufReader<File>,
}

pub struct SpillStore {
    cfg: SpillConfig,
    /// Held for the lifetime of the store: one writer per directory.
    _lock: File,
    /// Live segments, including the active one.
    segments: BTreeMap<u64, SegmentInfo>,
    active: Option<Active>,
    next_seq: u64,
    reader: Option<Reader>,
    /// Next record `next_record` delivers.
    read_pos: Pos,
    /// First record not committed.
    commit_pos: Pos,
    /// Delivered, not yet committed, in delivery order.
    delivered: VecDeque<RecordId>,
    bytes: u64,
    pending: u64,
    metrics: SpillMetrics,
}

impl SpillStore {
    /// Opens (creating if needed) the spill directory, takes its lock and
    /// recovers it: finishes interrupted deletions, cuts torn tails, moves
    /// corrupt segments aside. Never panics on file content.
    pub fn open(
        cfg: SpillConfig,
        metrics: SpillMetrics,
    ) -> Result<(Self, RecoveryReport), SpillError> {
        cfg.validate()
            .map_err(|e| SpillError::Config(e.to_string()))?;
        let dir = cfg.dir.clone();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err("create dir", &dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                files::sync_dir(parent)?;
            }
        }
        let lock = lock_dir(&dir, cfg.lock_wait)?;
        let cursor = files::read_cursor(&dir)?;
        let mut report = RecoveryReport::default();
        let mut dir_changed = false;

        let mut seqs = Vec::new();
        let mut max_seen: Option<u64> = None;
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match files::classify(name) {
                Entry::Segment(seq) => {
                    seqs.push(seq);
                    max_seen = max_seen.max(Some(seq));
                }
                Entry::Corrupt(seq) => max_seen = max_seen.max(Some(seq)),
                Entry::Other
                    if name == files::CURSOR_TMP_FILE || files::is_quarantine_tmp(name) =>
                {
                    // Leftover of an interrupted cursor or quarantine write;
                    // the old cursor is still valid, and a record whose
                    // quarantine was cut short is still in its segment.
                    let p = dir.join(name);
                    fs::remove_file(&p).map_err(io_err("remove", &p))?;
                    dir_changed = true;
                }
                Entry::Other => {}
            }
        }
        seqs.sort_unstable();

        let mut segments = BTreeMap::new();
        for seq in seqs {
            let path = files::segment_path(&dir, seq);
            if seq < cursor {
                // Committed before the crash; its unlink did not make it.
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                report.removed_committed += 1;
                dir_changed = true;
                continue;
            }
            if let Some(info) = recover_segment(&dir, seq, &mut report, &mut dir_changed)? {
                segments.insert(seq, info);
            }
        }
        if dir_changed {
            files::sync_dir(&dir)?;
        }

        // Sequence numbers never go below the cursor (a reused lower number
        // would be deleted as "committed") nor repeat a file still present.
        let next_seq = max_seen
            .map(|m| m.saturating_add(1))
            .unwrap_or(0)
            .max(cursor);
        let first = segments.keys().next().copied().unwrap_or(next_seq);
        let bytes = segments.values().map(|s| s.len).sum();
        let pending = segments.values().map(|s| s.records).sum();
        report.segments = segments.len() as u64;
        report.records = pending;

        metrics.torn_tails.inc_by(report.torn_tails);
        metrics.corrupt_segments.inc_by(report.corrupt_segments);
        metrics
            .max_bytes
            .set(i64::try_from(cfg.max_bytes).unwrap_or(i64::MAX));
        let store = SpillStore {
            cfg,
            _lock: lock,
            segments,
            active: None,
            next_seq,
            reader: None,
            read_pos: Pos::start_of(first),
            commit_pos: Pos::start_of(first),
            delivered: VecDeque::new(),
            bytes,
            pending,
            metrics,
        };
        store.publish_gauges();
        store.count_quarantine_files()?;
        tracing::info!(
            dir = %dir.display(),
            segments = report.segments,
            records = report.records,
            torn_tails = report.torn_tails,
            corrupt_segments = report.corrupt_segments,
            "spill recovered"
        );
        Ok((store, report))
    }

    /// Appends one record and returns once it is durable (data fsynced; when a
    /// segment is created, its header and directory entry fsynced too).
    /// On error nothing is acknowledged and the store stays usable.
    pub fn append(&mut self, data: &[u8]) -> Result<RecordId, SpillError> {
        let len = data.len() as u64;
        // Largest payload that fits an empty spill (one header, one frame).
        let limit = self
            .cfg
            .max_bytes
            .saturating_sub(codec::frame_len(HEADER))
            .min(MAX_PAYLOAD_LEN);
        if len > limit {
            return Err(SpillError::RecordTooLarge { len, limit });
        }
        let frame = codec::frame_len(len);
        let active_len = self.active.as_ref().map(|a| self.segments[&a.seq]);
        let new_segment = match active_len {
            None => true,
            // A record bigger than a segment still gets a segment of its own.
            Some(info) => info.records > 0 && info.len + frame > self.cfg.segment_bytes,
        };
        let needed = frame + if new_segment { HEADER } else { 0 };
        if self.bytes + needed > self.cfg.max_bytes {
            self.metrics.full_rejections.inc();
            return Err(SpillError::Full {
                needed,
                used: self.bytes,
                max: self.cfg.max_bytes,
            });
        }
        if new_segment {
            self.active = None; // seal: every append to it was already fsynced
            self.create_segment()?;
        }
        let Some(active) = self.active.as_mut() else {
            return Err(SpillError::Unavailable("no active segment".into()));
        };
        let seq = active.seq;
        let info = self.segments[&seq];
        let mut buf = Vec::with_capacity(frame as usize);
        codec::encode_record(data, &mut buf);
        let written = active
            .file
            .write_all(&buf)
            .and_then(|()| active.file.sync_data());
        if let Err(e) = written {
            // The frame may be partly on disk. Cut it off if we can, and in
            // any case stop appending to this file: after a failed fsync its
            // page cache state is unknown. Recovery treats leftovers as torn.
            let _ = active.file.set_len(info.len);
            self.active = None;
            return Err(io_err("append", self.segment_path(seq))(e));
        }
        let id = RecordId {
            segment: seq,
            offset: info.len,
            end: info.len + frame,
            index: info.records,
        };
        self.segments.insert(
            seq,
            SegmentInfo {
                len: id.end,
                records: info.records + 1,
            },
        );
        self.bytes += frame;
        self.pending += 1;
        self.metrics.records_written.inc();
        self.publish_gauges();
        Ok(id)
    }

    /// The next record to replay, oldest first, or `None` when every stored
    /// record has been delivered. Delivery does not remove anything: call
    /// [`SpillStore::commit`] once the record is stored in Postgres, or
    /// [`SpillStore::rewind`] to deliver the uncommitted records again.
    pub fn next_record(&mut self) -> Result<Option<Record>, SpillError> {
        loop {
            let Some((&seq, &info)) = self.segments.range(self.read_pos.seq..).next() else {
                return Ok(None);
            };
            if seq != self.read_pos.seq {
                self.read_pos = Pos::start_of(seq);
            }
            let pos = self.read_pos;
            if pos.offset >= info.len {
                if self.is_active(seq) {
                    return Ok(None);
                }
                self.read_pos = Pos::start_of(seq + 1);
                continue;
            }
            let reader = match self.reader_at(pos) {
                Ok(r) => r,
                Err(SpillError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    self.lose_segment(seq);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let frame = codec::read_frame(&mut reader.file, info.len - pos.offset);
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    self.reader = None;
                    return Err(io_err("read", self.segment_path(seq))(e));
                }
            };
            match frame {
                Frame::Record { payload, frame_len } => {
                    let id = RecordId {
                        segment: seq,
                        offset: pos.offset,
                        end: pos.offset + frame_len,
                        index: pos.index,
                    };
                    reader.offset = id.end;
                    self.read_pos = Pos {
                        seq,
                        offset: id.end,
                        index: pos.index + 1,
                    };
                    self.delivered.push_back(id);
                    return Ok(Some(Record { id, data: payload }));
                }
                Frame::End | Frame::Incomplete | Frame::Corrupt(_) => {
                    // Validated at open or written by us, yet damaged now
                    // (bit rot, outside interference): same treatment as at
                    // recovery, the records before the damage stay.
                    self.damaged_at(pos, format!("{frame:?}"))?;
                }
            }
        }
    }

    /// Marks `id` and every record delivered before it as stored in Postgres.
    /// Segments whose records are all committed are deleted: first the
    /// cursor is made durable, then the files are unlinked, then the
    /// directory is fsynced.
    pub fn commit(&mut self, id: RecordId) -> Result<(), SpillError> {
        let Some(k) = self.delivered.iter().position(|d| *d == id) else {
            return Err(SpillError::UnknownRecord(id));
        };
        let n = (k + 1) as u64;
        self.delivered.drain(..=k);
        self.commit_pos = Pos {
            seq: id.segment,
            offset: id.end,
            index: id.index + 1,
        };
        self.pending = self.pending.saturating_sub(n);
        self.metrics.records_replayed.inc_by(n);
        let deleted = self.delete_committed();
        // After the deletion, so `pending == 0` is never seen with stale bytes.
        self.publish_gauges();
        deleted
    }

    /// Copies delivered record `id`, whose bytes are `data`, durably to a
    /// quarantine file in the spill directory and returns its path. For a
    /// record that passed its checksum but that the consumer cannot use (an
    /// unknown batch version): the caller commits it afterwards so the records
    /// behind it are replayed, and the data stays on disk for an operator.
    pub fn quarantine(&mut self, id: RecordId, data: &[u8]) -> Result<PathBuf, SpillError> {
        if !self.delivered.contains(&id) {
            return Err(SpillError::UnknownRecord(id));
        }
        let path = files::write_quarantine(&self.cfg.dir, id.segment, id.offset, data)?;
        self.metrics.quarantined_records.inc();
        self.count_quarantine_files()?;
        Ok(path)
    }

    /// Puts quarantined records that `decodable` accepts now (written by a
    /// newer kernel, quarantined after a rollback, and this is that newer
    /// kernel again) back into the spill: each is appended durably, then its
    /// quarantine file is removed. Returns how many went back and how many
    /// stay quarantined. Stops at the first error (e.g. `Full`); what was
    /// not requeued stays in its file. A record too large for the budget
    /// is skipped (left quarantined).
    pub fn requeue_quarantined(
        &mut self,
        decodable: impl Fn(&[u8]) -> bool,
    ) -> Result<(u64, u64), SpillError> {
        let (mut requeued, mut left) = (0, 0);
        let result = (|| {
            for path in files::quarantine_files(&self.cfg.dir)? {
                let data = fs::read(&path).map_err(io_err("read", &path))?;
                if !decodable(&data) {
                    left += 1;
                    continue;
                }
                // A crash between these two steps leaves the record twice:
                // replayed twice, de-duplicated by Postgres.
                match self.append(&data) {
                    Ok(_) => {}
                    // Never fits this spill's budget: it stays, the others may go.
                    Err(SpillError::RecordTooLarge { .. }) => {
                        left += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                files::sync_dir(&self.cfg.dir)?;
                requeued += 1;
            }
            Ok((requeued, left))
        })();
        self.count_quarantine_files()?;
        result
    }

    /// Sets the quarantine gauge from the directory (also sees files an
    /// operator removed).
    fn count_quarantine_files(&self) -> Result<(), SpillError> {
        let n = files::quarantine_files(&self.cfg.dir)?.len() as u64;
        self.metrics.quarantine_files.set(clamp_i64(n));
        Ok(())
    }

    /// Forgets deliveries that were not committed (e.g. Postgres went away
    /// mid-replay); `next_record` starts again at the first uncommitted one.
    pub fn rewind(&mut self) {
        self.delivered.clear();
        self.read_pos = self.commit_pos;
    }

    pub fn stats(&self) -> SpillStats {
        SpillStats {
            bytes: self.bytes,
            max_bytes: self.cfg.max_bytes,
            segments: self.segments.len() as u64,
            pending_records: self.pending,
        }
    }

    /// True when no record is waiting for replay.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    pub fn metrics(&self) -> &SpillMetrics {
        &self.metrics
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        files::segment_path(&self.cfg.dir, seq)
    }

    fn is_active(&self, seq: u64) -> bool {
        self.active.as_ref().is_some_and(|a| a.seq == seq)
    }

    /// Bytes first, pending last: a reader that sees `pending == 0` sees the
    /// bytes of that state too.
    fn publish_gauges(&self) {
        self.metrics.bytes.set(clamp_i64(self.bytes));
        self.metrics
            .segments
            .set(clamp_i64(self.segments.len() as u64));
        self.metrics.pending_records.set(clamp_i64(self.pending));
    }

    fn create_segment(&mut self) -> Result<(), SpillError> {
        let seq = self.next_seq;
        if seq > files::MAX_SEQ {
            return Err(SpillError::Unavailable(
                "segment sequence numbers exhausted".into(),
            ));
        }
        self.next_seq = seq + 1;
        let path = self.segment_path(seq);
        let created = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_err("create", &path))?;
            f.write_all(&codec::encode_segment_header(seq))
                .map_err(io_err("write", &path))?;
            f.sync_all().map_err(io_err("fsync", &path))?;
            files::sync_dir(&self.cfg.dir)?;
            Ok::<_, SpillError>(f)
        })();
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        self.segments.insert(
            seq,
            SegmentInfo {
                len: HEADER,
                records: 0,
            },
        );
        self.bytes += HEADER;
        self.active = Some(Active { seq, file });
        self.publish_gauges();
        Ok(())
    }

    fn reader_at(&mut self, pos: Pos) -> Result<&mut Reader, SpillError> {
        let reusable = self
            .reader
            .as_ref()
            .is_some_and(|r| r.seq == pos.seq && r.offset == pos.offset);
        if !reusable {
            let path = self.segment_path(pos.seq);
            let mut f = File::open(&path).map_err(io_err("open", &path))?;
            f.seek(SeekFrom::Start(pos.offset))
                .map_err(io_err("seek", &path))?;
            self.reader = Some(Reader {
                seq: pos.seq,
                offset: pos.offset,
                file: BufReader::with_capacity(256 * 1024, f),
            });
        }
        Ok(self.reader.as_mut().expect("reader was just set"))
    }

    /// Damage found during replay at `pos`: keep the valid prefix, move the
    /// rest aside, continue with the next segment.
    fn damaged_at(&mut self, pos: Pos, what: String) -> Result<(), SpillError> {
        self.reader = None;
        if self.is_active(pos.seq) {
            self.active = None;
        }
        let (aside, kept) = recovery::quarantine(&self.cfg.dir, pos.seq, pos.offset)?;
        tracing::error!(
            segment = %files::segment_file_name(pos.seq),
            offset = pos.offset,
            damage = %what,
            moved_to = %aside.display(),
            "spill segment damaged during replay; records after the damage are lost"
        );
        self.metrics.corrupt_segments.inc();
        let old = self.segments[&pos.seq];
        self.bytes -= old.len - if kept { pos.offset } else { 0 };
        self.pending = self.pending.saturating_sub(old.records - pos.index);
        if kept {
            self.segments.insert(
                pos.seq,
                SegmentInfo {
                    len: pos.offset,
                    records: pos.index,
                },
            );
        } else {
            self.segments.remove(&pos.seq);
        }
        self.read_pos = Pos::start_of(pos.seq + 1);
        let deleted = self.delete_committed();
        self.publish_gauges();
        deleted
    }

    /// A segment file vanished under us (deleted by hand?): its records are
    /// lost; count it like a corrupt segment so the loss is visible.
    fn lose_segment(&mut self, seq: u64) {
        tracing::error!(segment = %files::segment_file_name(seq), "spill segment file missing; its records are lost");
        if self.is_active(seq) {
            self.active = None;
        }
        if let Some(info) = self.segments.remove(&seq) {
            self.bytes -= info.len;
            self.pending = self.pending.saturating_sub(info.records);
        }
        self.metrics.corrupt_segments.inc();
        self.publish_gauges();
    }

    /// Deletes every segment entirely before the commit position.
    fn delete_committed(&mut self) -> Result<(), SpillError> {
        let cp = self.commit_pos;
        let done: Vec<u64> = self
            .segments
            .iter()
            .take_while(|(&seq, info)| seq < cp.seq || (seq == cp.seq && cp.offset >= info.len))
            .map(|(&seq, _)| seq)
            .collect();
        let Some(&last) = done.last() else {
            return Ok(());
        };
        // 1. durable replay position, 2. unlink, 3. fsync the directory.
        // A crash after 1 leaves files that the next open deletes; a crash
        // before 1 only re-delivers committed records.
        files::write_cursor(&self.cfg.dir, last + 1)?;
        for seq in &done {
            if self.is_active(*seq) {
                self.active = None;
            }
            if self.reader.as_ref().is_some_and(|r| r.seq == *seq) {
                self.reader = None;
            }
            let path = self.segment_path(*seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path)(e)),
            }
            if let Some(info) = self.segments.remove(seq) {
                self.bytes -= info.len;
            }
        }
        files::sync_dir(&self.cfg.dir)
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// How often a locked directory is tried again while `spill.lock_wait` runs.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Takes the directory's lock, retrying for up to `wait` while another process holds it.
fn lock_dir(dir: &Path, wait: std::time::Duration) -> Result<File, SpillError> {
    let path = dir.join(files::LOCK_FILE);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open", &path))?;
    let deadline = std::time::Instant::now() + wait;
    let mut waiting = false;
    loop {
        match f.try_lock() {
            Ok(()) => {
                if waiting {
                    tracing::info!(dir = %dir.display(), "spill directory lock taken");
                }
                return Ok(f);
            }
            Err(TryLockError::WouldBlock) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(SpillError::Locked {
                        dir: dir.to_path_buf(),
                        waited: wait,
                    });
                }
                if !waiting {
                    tracing::warn!(dir = %dir.display(), wait_s = wait.as_secs(), "spill directory locked by another store; waiting for it (spill.lock_wait)");
                    waiting = true;
                }
                std::thread::sleep(LOCK_RETRY.min(left));
            }
            Err(TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
        }
    }
}

/// Recovers one segment at open. Returns its info if it stays live.
fn recover_segment(
    dir: &Path,
    seq: u64,
    report: &mut RecoveryReport,
    dir_changed: &mut bool,
) -> Result<Option<SegmentInfo>, SpillError> {
    let path = files::segment_path(dir, seq);
    let name = files::segment_file_name(seq);
    let info = match recovery::scan_file(&path, seq)? {
        FileScan::TornHeader => {
            tracing::warn!(segment = %name, "spill segment torn while being created; removed");
            report.torn_tails += 1;
            None
        }
        FileScan::BadHeader(damage) => {
            let (aside, _) = recovery::quarantine(dir, seq, 0)?;
            tracing::error!(segment = %name, %damage, moved_to = %aside.display(), "corrupt spill segment header; segment moved aside");
            report.corrupt_segments += 1;
            report.quarantined.push(aside);
            *dir_changed = true;
            return Ok(None);
        }
        FileScan::Body {
            valid_len,
            file_len,
            records,
            end,
        } => {
            match end {
                ScanEnd::Clean => {}
                ScanEnd::Torn => {
                    tracing::warn!(segment = %name, valid_len, file_len, records, "torn spill write cut off");
                    recovery::truncate(&path, valid_len)?;
                    report.torn_tails += 1;
                }
                ScanEnd::Corrupt(damage) => {
                    let (aside, _) = recovery::quarantine(dir, seq, valid_len)?;
                    tracing::error!(
                        segment = %name, %damage, valid_len, file_len, records,
                        moved_to = %aside.display(),
                        "corrupt spill segment; valid records before the damage kept, rest moved aside"
                    );
                    report.corrupt_segments += 1;
                    report.quarantined.push(aside);
                    *dir_changed = true;
                    if valid_len <= HEADER {
                        return Ok(None);
                    }
                }
            }
            (records > 0).then_some(SegmentInfo {
                len: valid_len,
                records,
            })
        }
    };
    if info.is_none() {
        // Holds no record: nothing to replay, nothing to protect.
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        *dir_changed = true;
    }
    Ok(info)
}
