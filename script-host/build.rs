//! Embeds the Python package (`python/mitmproxy`, `python/flowtap_host`) into the binary, so a
//! `script-host` built from a clean checkout needs no files beside it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("python package directory is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "__pycache__") {
                collect(&path, root, out);
            }
        } else if path.extension().is_some_and(|e| e == "py") {
            let rel = path.strip_prefix(root).expect("under root");
            out.push((rel.to_string_lossy().into_owned(), path));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("python");
    let mut files = Vec::new();
    for package in ["mitmproxy", "flowtap_host", "libmproxy", "netlib"] {
        collect(&root.join(package), &root, &mut files);
        println!("cargo:rerun-if-changed={}", root.join(package).display());
    }
    // FNV-1a over names and contents: the directory name the package is extracted to.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut code =
        String::from("/// The embedded Python files: (path under the package root, source).\n");
    code.push_str("pub(crate) static FILES: &[(&str, &str)] = &[\n");
    for (rel, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(path).expect("python file is readable");
        for b in rel.bytes().chain(bytes.iter().copied()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("write to string");
    }
    code.push_str("];\n");
    writeln!(
        code,
        "/// A hash of the embedded files.\npub(crate) const HASH: &str = \"{hash:016x}\";"
    )
    .expect("write to string");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("embedded_python.rs"), code).expect("OUT_DIR is writable");
}
