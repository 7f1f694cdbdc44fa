//! Reading and writing mitmproxy flow files (`mitmdump -w` / `-r`, spec 5.1).
//!
//! A flow file is a plain concatenation of tnetstring dicts, one per flow, with no header.
//! [`FlowReader`] streams them (migrating older versions on the way) and also accepts a HAR
//! file; [`FlowWriter`] appends flows, flushing after each one, so a crash loses nothing that
//! was written.

use std::io::{Read, Write};

use flowtap_proto::v1::Flow;

use crate::compat::{CompatError, Migrator};
use crate::har::{self, HarError};
use crate::state::{self, StateError};
use crate::tnetstring::{self, TnetstringError};

/// Why reading a flow file stopped. Flows before the failing one were already returned.
#[derive(Debug, thiserror::Error)]
pub enum FlowReadError {
    /// The bytes at `offset` are not a tnetstring (corrupt or truncated file).
    #[error("flow file corrupted after {flows_read} flows: {source}")]
    Corrupt {
        /// How many flows were read before the damage.
        flows_read: usize,
        /// The decoding error; it names the byte offset.
        source: TnetstringError,
    },
    /// The flow starting at `offset` has a version that cannot be migrated.
    #[error("flow starting at byte {offset}: {source}")]
    Migrate {
        /// Offset of the flow's first byte.
        offset: u64,
        /// The migration error.
        source: CompatError,
    },
    /// The flow starting at `offset` does not have the shape of a flow.
    #[error("flow starting at byte {offset}: {source}")]
    State {
        /// Offset of the flow's first byte.
        offset: u64,
        /// The field that was wrong.
        source: StateError,
    },
    /// The file looked like HAR (it starts with `{`) but could not be imported.
    #[error("reading HAR file: {0}")]
    Har(#[from] HarError),
}

impl FlowReadError {
    /// The byte offset the error refers to (0 for HAR errors).
    pub fn offset(&self) -> u64 {
        match self {
            FlowReadError::Corrupt { source, .. } => source.offset(),
            FlowReadError::Migrate { offset, .. } | FlowReadError::State { offset, .. } => *offset,
            FlowReadError::Har(_) => 0,
        }
    }
}

enum Mode {
    Start,
    Tnetstring,
    Har(std::vec::IntoIter<Flow>),
    Done,
}

/// Streams the flows of a flow file (or of a HAR file) from any reader.
///
/// It is an iterator of `Result<Flow, FlowReadError>`. After the first error it ends, so the
/// flows before a damaged spot are kept, as mitmproxy's `readfile` does. It reads no further
/// than the end of the last flow it returned.
pub struct FlowReader<R> {
    reader: Prefixed<R>,
    offset: u64,
    flows_read: usize,
    migrator: Migrator,
    mode: Mode,
}

impl<R: Read> FlowReader<R> {
    /// A reader over `reader`, which is positioned at the start of a flow file.
    pub fn new(reader: R) -> Self {
        Self {
            reader: Prefixed {
                prefix: Vec::new(),
                inner: reader,
            },
            offset: 0,
            flows_read: 0,
            migrator: Migrator::new(),
            mode: Mode::Start,
        }
    }

    /// Bytes consumed so far: the offset of the next flow.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads every flow; returns the flows read and the error that stopped reading, if any.
    pub fn read_all(self) -> (Vec<Flow>, Option<FlowReadError>) {
        let mut flows = Vec::new();
        for item in self {
            match item {
                Ok(flow) => flows.push(flow),
                Err(e) => return (flows, Some(e)),
            }
        }
        (flows, None)
    }

    /// Skips a UTF-8 BOM and decides between HAR (first byte `{`) and tnetstring.
    fn start(&mut self) -> Result<(), FlowReadError> {
        let mut head = Vec::new();
        let corrupt = |source| FlowReadError::Corrupt {
            flows_read: 0,
            source,
        };
        (&mut self.reader.inner)
            .take(3)
            .read_to_end(&mut head)
            .map_err(|source| corrupt(TnetstringError::Io { offset: 0, source }))?;
        if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.offset = 3;
            head.clear();
            (&mut self.reader.inner)
                .take(1)
                .read_to_end(&mut head)
                .map_err(|source| corrupt(TnetstringError::Io { offset: 3, source }))?;
        }
        if head.first() == Some(&b'{') {
            let mut text = head;
            self.reader.inner.read_to_end(&mut text).map_err(|source| {
                corrupt(TnetstringError::Io {
                    offset: self.offset,
                    source,
                })
            })?;
            self.mode = Mode::Har(har::import(&text)?.into_iter());
        } else {
            self.reader.prefix = head;
            self.mode = Mode::Tnetstring;
        }
        Ok(())
    }

    fn next_tnetstring(&mut self) -> Option<Result<Flow, FlowReadError>> {
        let start = self.offset;
        let mut counting = Counting {
            inner: &mut self.reader,
            count: 0,
        };
        let value = match tnetstring::read_value(&mut counting, start) {
            Ok(Some(value)) => value,
            Ok(None) => return None,
            Err(source) => {
                return Some(Err(FlowReadError::Corrupt {
                    flows_read: self.flows_read,
                    source,
                }));
            }
        };
        self.offset += counting.count;
        let result = self
            .migrator
            .migrate(value)
            .map_err(|source| FlowReadError::Migrate {
                offset: start,
                source,
            })
            .and_then(|v| {
                state::from_state(&v).map_err(|source| FlowReadError::State {
                    offset: start,
                    source,
                })
            });
        if result.is_ok() {
            self.flows_read += 1;
        }
        Some(result)
    }
}

impl<R: Read> Iterator for FlowReader<R> {
    type Item = Result<Flow, FlowReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Mode::Start = self.mode
            && let Err(e) = self.start()
        {
            self.mode = Mode::Done;
            return Some(Err(e));
        }
        let item = match &mut self.mode {
            Mode::Start | Mode::Done => None,
            Mode::Har(flows) => flows.next().map(Ok),
            Mode::Tnetstring => self.next_tnetstring(),
        };
        if !matches!(item, Some(Ok(_))) {
            self.mode = Mode::Done;
        }
        item
    }
}

/// A reader with a few bytes pushed back in front of it.
struct Prefixed<R> {
    prefix: Vec<u8>,
    inner: R,
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.prefix.is_empty() {
            return self.inner.read(buf);
        }
        let n = buf.len().min(self.prefix.len());
        buf[..n].copy_from_slice(&self.prefix[..n]);
        self.prefix.drain(..n);
        Ok(n)
    }
}

struct Counting<'a, R> {
    inner: &'a mut R,
    count: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Writes flows in mitmproxy's format (version 21), flushing after every flow.
pub struct FlowWriter<W> {
    writer: W,
}

impl<W: Write> FlowWriter<W> {
    /// A writer appending to `writer` (open the file in append mode to add to a file).
    pub fn new(writer: W) -> Self {
        Self { writer }
    }

    /// Writes one flow and flushes. On error the file may hold a partial flow.
    pub fn add(&mut self, flow: &Flow) -> std::io::Result<()> {
        self.writer.write_all(&encode_flow(flow))?;
        self.writer.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.writer
    }
}

/// The bytes of one flow as mitmproxy writes it.
pub fn encode_flow(flow: &Flow) -> Vec<u8> {
    tnetstring::encode(&state::to_state(flow))
}

/// Reads all flows of an in-memory flow file; fails on the first error.
pub fn read_flows(data: &[u8]) -> Result<Vec<Flow>, FlowReadError> {
    FlowReader::new(data).collect()
}
