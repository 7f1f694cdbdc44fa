//! The sink's spool: flows that could not reach the store yet, on local disk.
//!
//! A spool is a directory of segment files. Each segment is a sequence of records, each a
//! little-endian `u32` length followed by a protobuf-encoded [`Flow`] (bodies included). Flows
//! are appended to the one *open* segment (`<run>-<n>.open`); [`Spool::seal`] closes it
//! (`.spool`), and sealed segments are read back and deleted once delivered. Segments left by
//! an earlier process, open or sealed, are sealed on [`Spool::open`] and delivered like ours. A
//! record cut short by a crash ends its segment; the records before it are kept.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flowtap_proto::v1::Flow;
use prost::Message;

use crate::StoreError;

/// A spool directory, owned by one process at a time.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    run: String,
    open: Mutex<OpenSegment>,
}

#[derive(Debug, Default)]
struct OpenSegment {
    file: Option<File>,
    index: u64,
    records: u64,
}

/// A sealed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The segment file.
    pub path: PathBuf,
    /// Whether this process wrote it (else an earlier one did).
    pub ours: bool,
}

impl Spool {
    /// Opens (creating) the spool directory and seals segments an earlier process left open.
    pub fn open(dir: &Path) -> Result<Spool, StoreError> {
        let action = || format!("opening spool directory {}", dir.display());
        crate::private::create_dir(dir).map_err(|e| StoreError::io(action(), e))?;
        for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(action(), e))? {
            let path = entry.map_err(|e| StoreError::io(action(), e))?.path();
            if path.extension().is_some_and(|e| e == "open") {
                std::fs::rename(&path, path.with_extension("spool"))
                    .map_err(|e| StoreError::io(action(), e))?;
            }
        }
        flowtap_telemetry::sink::spool_grew(
            sealed_bytes(dir).map_err(|e| StoreError::io(action(), e))?,
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Ok(Spool {
            dir: dir.to_owned(),
            // Fixed width, so segment names sort by age.
            run: format!("{nanos:024x}-{:08x}", std::process::id()),
            open: Mutex::new(OpenSegment::default()),
        })
    }

    /// Appends a flow to the open segment. The record is handed to the OS before this returns.
    pub fn write(&self, flow: &Flow) -> Result<(), StoreError> {
        let mut record = Vec::with_capacity(4 + flow.encoded_len());
        record.extend_from_slice(&(flow.encoded_len() as u32).to_le_bytes());
        flow.encode(&mut record)
            .expect("a Vec grows to hold any message");
        let mut open = self
            .open
            .lock()
            .expect("spool lock is never held across a panic");
        let path = self.segment_path(open.index, "open");
        let action = || format!("writing spool file {}", path.display());
        if open.file.is_none() {
            let file =
                crate::private::open_append(&path).map_err(|e| StoreError::io(action(), e))?;
            open.file = Some(file);
        }
        let file = open.file.as_mut().expect("opened above");
        file.write_all(&record)
            .map_err(|e| StoreError::io(action(), e))?;
        open.records += 1;
        flowtap_telemetry::sink::spool_grew(record.len() as u64);
        Ok(())
    }

    /// Whether the open segment holds records.
    pub fn has_open_records(&self) -> bool {
        self.open
            .lock()
            .expect("spool lock is never held across a panic")
            .records
            > 0
    }

    /// Closes the open segment, if it holds records, so it can be delivered.
    pub fn seal(&self) -> Result<(), StoreError> {
        let mut open = self
            .open
            .lock()
            .expect("spool lock is never held across a panic");
        if open.records == 0 {
            return Ok(());
        }
        let path = self.segment_path(open.index, "open");
        if let Some(file) = open.file.take() {
            file.sync_data()
                .map_err(|e| StoreError::io(format!("syncing {}", path.display()), e))?;
        }
        std::fs::rename(&path, path.with_extension("spool"))
            .map_err(|e| StoreError::io(format!("sealing {}", path.display()), e))?;
        open.index += 1;
        open.records = 0;
        Ok(())
    }

    /// The sealed segments, oldest first.
    pub fn segments(&self) -> Result<Vec<Segment>, StoreError> {
        let action = || format!("listing spool directory {}", self.dir.display());
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| StoreError::io(action(), e))? {
            let path = entry.map_err(|e| StoreError::io(action(), e))?.path();
            if path.extension().is_some_and(|e| e == "spool") {
                let ours = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&self.run));
                segments.push(Segment { path, ours });
            }
        }
        segments.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(segments)
    }

    /// How many whole records the sealed segments hold (at start: what an earlier process
    /// left). Reads only the length prefixes.
    pub fn left_over_records(&self) -> Result<u64, StoreError> {
        let mut count = 0;
        for segment in self.segments()? {
            count += SegmentReader::open(&segment.path)?.count_records()?;
        }
        Ok(count)
    }

    fn segment_path(&self, index: u64, extension: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{index:08}.{extension}", self.run))
    }
}

/// Reads the flows of a sealed segment, in order.
#[derive(Debug)]
pub struct SegmentReader {
    path: PathBuf,
    reader: BufReader<File>,
}

impl SegmentReader {
    /// Opens a segment.
    pub fn open(path: &Path) -> Result<SegmentReader, StoreError> {
        let file = File::open(path)
            .map_err(|e| StoreError::io(format!("opening spool file {}", path.display()), e))?;
        Ok(SegmentReader {
            path: path.to_owned(),
            reader: BufReader::new(file),
        })
    }

    /// The next flow, or None at the end. A record cut short or undecodable ends the segment
    /// (logged): it can only be the last one, written when a process died.
    pub fn next_flow(&mut self) -> Option<Flow> {
        let mut length = [0; 4];
        match self.reader.read_exact(&mut length) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(error) => return self.damaged(&error),
        }
        let mut record = vec![0; u32::from_le_bytes(length) as usize];
        if let Err(error) = self.reader.read_exact(&mut record) {
            return self.damaged(&error);
        }
        match Flow::decode(&record[..]) {
            Ok(flow) => Some(flow),
            Err(error) => self.damaged(&error),
        }
    }

    /// Counts the whole records from here to the end, skipping their contents.
    pub fn count_records(mut self) -> Result<u64, StoreError> {
        let action = || format!("reading spool file {}", self.path.display());
        let total = self
            .reader
            .get_ref()
            .metadata()
            .map_err(|e| StoreError::io(action(), e))?
            .len();
        let (mut position, mut count) = (0u64, 0);
        let mut length = [0; 4];
        while position + 4 <= total {
            self.reader
                .read_exact(&mut length)
                .map_err(|e| StoreError::io(action(), e))?;
            let end = position + 4 + u64::from(u32::from_le_bytes(length));
            if end > total {
                break;
            }
            self.reader
                .seek_relative(i64::from(u32::from_le_bytes(length)))
                .map_err(|e| StoreError::io(action(), e))?;
            position = end;
            count += 1;
        }
        Ok(count)
    }

    fn damaged(&self, error: &dyn std::fmt::Display) -> Option<Flow> {
        tracing::warn!(path = %self.path.display(), %error, "spool file ends in a damaged record");
        None
    }
}

/// Deletes a delivered segment.
pub fn remove_segment(segment: &Segment) -> Result<(), StoreError> {
    let bytes = std::fs::metadata(&segment.path).map_or(0, |m| m.len());
    std::fs::remove_file(&segment.path).map_err(|e| {
        StoreError::io(format!("removing spool file {}", segment.path.display()), e)
    })?;
    flowtap_telemetry::sink::spool_shrank(bytes);
    Ok(())
}

/// The bytes of the sealed segments in `dir` (at start: what an earlier process left).
fn sealed_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "spool") {
            bytes += entry.metadata()?.len();
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(id: &str) -> Flow {
        Flow {
            id: id.into(),
            r#type: "http".into(),
            ..Flow::default()
        }
    }

    fn read(segment: &Segment) -> Vec<String> {
        let mut reader = SegmentReader::open(&segment.path).unwrap();
        std::iter::from_fn(|| reader.next_flow())
            .map(|f| f.id)
            .collect()
    }

    #[test]
    fn sealed_segments_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.write(&flow("a")).unwrap();
        spool.write(&flow("b")).unwrap();
        assert!(
            spool.segments().unwrap().is_empty(),
            "the open segment is not offered"
        );
        spool.seal().unwrap();
        spool.write(&flow("c")).unwrap();
        spool.seal().unwrap();
        let segments = spool.segments().unwrap();
        assert_eq!(segments.len(), 2);
        assert!(segments.iter().all(|s| s.ours));
        assert_eq!(read(&segments[0]), ["a", "b"]);
        assert_eq!(read(&segments[1]), ["c"]);
        remove_segment(&segments[0]).unwrap();
        assert_eq!(spool.segments().unwrap().len(), 1);
    }

    #[test]
    fn a_crashed_process_leaves_flows_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = Spool::open(dir.path()).unwrap();
        earlier.write(&flow("kept-1")).unwrap();
        earlier.write(&flow("kept-2")).unwrap();
        // The process died while writing a third record.
        let open = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&open)
            .unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(earlier);

        let later = Spool::open(dir.path()).unwrap();
        assert_eq!(later.left_over_records().unwrap(), 2);
        let segments = later.segments().unwrap();
        assert_eq!(segments.len(), 1);
        assert!(!segments[0].ours);
        assert_eq!(read(&segments[0]), ["kept-1", "kept-2"]);
    }
}
