//! A hook call's body that arrives in pieces (`CallBody`), written straight into the Python
//! `bytes` object the script will see: the worker never holds it twice.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The largest body accepted in pieces: the script protocol's message limit, as for a body
/// inside a call.
pub(crate) const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

/// A `bytes` object being filled. Python cannot see it until [`Body::into_bytes`]: until then
/// this value holds the only reference, so writing into it is sound.
pub(crate) struct Body {
    bytes: Py<PyBytes>,
    /// The object's buffer (valid while `bytes` lives), as an address so that the value can
    /// move between threads.
    at: usize,
    total: usize,
    filled: usize,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} of {} bytes)", self.filled, self.total)
    }
}

impl Body {
    /// A zero-filled `bytes` of `total` bytes, to be filled by [`Body::write`]. Takes the GIL.
    pub(crate) fn allocate(total: u64) -> Result<Self, String> {
        if total > MAX_BODY_BYTES {
            return Err(format!(
                "a body of {total} bytes is larger than the {MAX_BODY_BYTES} bytes accepted"
            ));
        }
        let total = usize::try_from(total).map_err(|e| e.to_string())?;
        Python::attach(|py| {
            let bytes = PyBytes::new_with(py, total, |_| Ok(())).map_err(|e| e.to_string())?;
            let at = bytes.as_bytes().as_ptr() as usize;
            Ok(Self {
                bytes: bytes.unbind(),
                at,
                total,
                filled: 0,
            })
        })
    }

    /// Appends the next piece.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), String> {
        if data.len() > self.total - self.filled {
            return Err(format!(
                "body pieces add up to more than the announced {} bytes",
                self.total
            ));
        }
        // SAFETY: `at` is the buffer of `bytes`, which this value keeps alive and which no
        // Python code can reach yet (see the type's doc); the range was checked above.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                (self.at as *mut u8).add(self.filled),
                data.len(),
            );
        }
        self.filled += data.len();
        Ok(())
    }

    /// The length announced for the body.
    pub(crate) fn total(&self) -> u64 {
        self.total as u64
    }

    /// All pieces arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.filled == self.total
    }

    /// The filled object, for the call's state.
    pub(super) fn into_bytes(self) -> Py<PyBytes> {
        self.bytes
    }
}
