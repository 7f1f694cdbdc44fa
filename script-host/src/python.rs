//! The embedded interpreter: start-up, the embedded package, and the thread that runs the
//! Python runtime (`flowtap_host.main`). All PyO3 code of the crate is in this module.

mod body;
mod bridge;
mod convert;
mod embed;
mod fields;
mod flowio;
mod parts;
mod reply;

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::{Arc, Once};

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::codecs::python_module;
use crate::worker::Worker;
use crate::{Config, ScriptHostError};
use flowio::python_module as flowio_module;

pub(crate) use body::{Body, MAX_BODY_BYTES};

/// Starts the interpreter (once per process) and the runtime on a dedicated thread.
pub(crate) fn start(config: &Config, worker: &Arc<Worker>) -> Result<(), ScriptHostError> {
    let package_dir = embed::extract(config.package_dir.as_deref())?;
    initialize(config.venv.as_deref())?;
    let scripts = config.scripts.clone();
    let thread_worker = Arc::clone(worker);
    std::thread::Builder::new()
        .name("python".into())
        .spawn(move || {
            let outcome = Python::attach(|py| {
                run(py, &package_dir, scripts, Arc::clone(&thread_worker))
                    .map_err(|e| describe(py, &e))
            });
            thread_worker.finish(outcome);
        })
        .map_err(|e| ScriptHostError::Python(format!("spawning the Python thread: {e}")))?;
    Ok(())
}

fn run(
    py: Python<'_>,
    package_dir: &Path,
    scripts: Vec<String>,
    worker: Arc<Worker>,
) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?;
    let sys_path = sys_path.cast::<PyList>()?;
    sys_path.insert(0, package_dir.to_string_lossy().as_ref())?;
    let host = py.import("flowtap_host")?;
    let bridge = Py::new(py, bridge::Bridge::new(worker))?;
    host.getattr("main")?.call1((bridge, scripts))?;
    Ok(())
}

/// A Python exception as text, with its traceback.
pub(crate) fn describe(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        tb.getattr("format_exception")?
            .call1((err.value(py),))?
            .extract::<Vec<String>>()
    });
    match formatted {
        Ok(lines) => lines.concat(),
        Err(_) => err.to_string(),
    }
}

static INIT: Once = Once::new();

/// Initialises CPython; as the venv's own python when `venv` is given, so that its
/// site-packages (and only those) are importable.
fn initialize(venv: Option<&Path>) -> Result<(), ScriptHostError> {
    let mut result = Ok(());
    INIT.call_once(|| {
        pyo3::append_to_inittab!(python_module);
        pyo3::append_to_inittab!(flowio_module);
        result = match venv {
            Some(venv) => initialize_as(&venv.join("bin").join("python")),
            None => {
                Python::initialize();
                Ok(())
            }
        };
    });
    result
}

fn initialize_as(executable: &Path) -> Result<(), ScriptHostError> {
    let exe = CString::new(executable.to_string_lossy().as_bytes())
        .map_err(|_| ScriptHostError::Python("the venv path contains a NUL byte".into()))?;
    // SAFETY: the documented embedding sequence (PyConfig_InitPythonConfig, set the executable,
    // Py_InitializeFromConfig, PyConfig_Clear), run once, before any other use of Python in the
    // process (guarded by INIT). The GIL is then released as pyo3's own initialisation does.
    unsafe {
        let mut cfg = MaybeUninit::<pyo3::ffi::PyConfig>::uninit();
        pyo3::ffi::PyConfig_InitPythonConfig(cfg.as_mut_ptr());
        let mut cfg = cfg.assume_init();
        cfg.install_signal_handlers = 0;
        let status =
            pyo3::ffi::PyConfig_SetBytesString(&mut cfg, &mut cfg.executable, exe.as_ptr());
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            pyo3::ffi::PyConfig_Clear(&mut cfg);
            return Err(ScriptHostError::Python(
                "setting the venv executable".into(),
            ));
        }
        let status = pyo3::ffi::Py_InitializeFromConfig(&cfg);
        pyo3::ffi::PyConfig_Clear(&mut cfg);
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            return Err(ScriptHostError::Python(format!(
                "initialising Python as {}",
                executable.display()
            )));
        }
        pyo3::ffi::PyEval_SaveThread();
    }
    Ok(())
}
