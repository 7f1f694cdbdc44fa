//! The native module `_flowtap_io`: mitmproxy's flow-file bytes for the scripts'
//! `mitmproxy.io` (`FlowReader`, `FlowWriter`), from the same code that reads and writes
//! `-r`/`-w` files, older format versions migrated as on `-r`.

#[pyo3::pymodule(name = "_flowtap_io")]
pub(crate) mod python_module {
    use flowtap_flow::compat::Migrator;
    use flowtap_flow::tnetstring;
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyList};

    use super::super::convert::{py_to_value, value_to_py};

    /// One flow's `get_state()` dict as flow-file bytes; ValueError names what cannot be
    /// serialized.
    #[pyfunction]
    fn dumps<'py>(py: Python<'py>, state: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let value = py_to_value(state).map_err(PyValueError::new_err)?;
        Ok(PyBytes::new(py, &tnetstring::encode(&value)))
    }

    /// Every flow state of a flow file's bytes, migrated to the current format version.
    /// ValueError names the byte offset of malformed data or what could not be migrated.
    #[pyfunction]
    fn loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let values = tnetstring::decode_all(data)
            .map_err(|e| PyValueError::new_err(format!("malformed flow file: {e}")))?;
        let mut migrator = Migrator::new();
        let states = PyList::empty(py);
        for value in values {
            let state = migrator
                .migrate(value)
                .map_err(|e| PyValueError::new_err(format!("unreadable flow: {e}")))?;
            states.append(value_to_py(py, &state)?)?;
        }
        Ok(states)
    }
}
