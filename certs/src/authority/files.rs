//! The CA's files on disk: creating the configuration directory and the private key file with
//! safe permissions, and reading a key-plus-certificate PEM file (ours or mitmproxy's).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::CaError;

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CaError {
    let path = path.to_path_buf();
    move |source| CaError::Io {
        action,
        path,
        source,
    }
}

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist yet; an existing
/// directory keeps its mode.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), CaError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("creating configuration directory", dir))
}

/// Writes `contents` to `path` with mode 0600 unless the file exists. Returns false if another
/// process created it first (the caller then loads that one).
///
/// The bytes go to a temporary file opened with mode 0600 from the start, which is then
/// hard-linked into place: the key is never readable by others, a crash never leaves a
/// half-written CA file, and a concurrent first start never overwrites another's CA.
pub(crate) fn write_private_new(path: &Path, contents: &[u8]) -> Result<bool, CaError> {
    let tmp = PathBuf::from(format!("{}.{}.tmp", path.display(), std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = write_then_link(&tmp, path, contents);
    let _ = fs::remove_file(&tmp);
    result
}

fn write_then_link(tmp: &Path, path: &Path, contents: &[u8]) -> Result<bool, CaError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io_error("creating CA file", tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_error("writing CA file", tmp))?;
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_error("installing CA file", path)(e)),
    }
}

/// The mode of `path` when group or others may access it (a CA key should be 0600), else None.
pub(crate) fn shared_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Logs a warning naming the fix when the CA key file at `path` is open to other users.
pub(crate) fn warn_if_shared(path: &Path) {
    if let Some(mode) = shared_mode(path) {
        tracing::warn!(
            "the CA private key {} is readable by other users (mode {mode:o}): anyone who can \
             read it can impersonate every site to clients that trust this CA; \
             fix with: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
}

/// Makes a public file (a certificate to distribute) hold `contents`: written when missing,
/// rewritten when it holds something else (say, the certificate of a CA since deleted).
pub(crate) fn sync_public_file(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    if fs::read(path).is_ok_and(|existing| existing == contents) {
        return Ok(());
    }
    fs::write(path, contents).map_err(io_error("writing CA certificate", path))
}

/// A CA read from disk: its key in PEM-decoded form and its certificate.
pub(crate) struct CaFile {
    pub(crate) key: KeyPair,
    pub(crate) cert: CertificateDer<'static>,
}

/// Reads the first private key and the first certificate of a PEM file, in either order.
///
/// Accepted keys: PKCS#8 (`BEGIN PRIVATE KEY`: ECDSA P-256/P-384, Ed25519, RSA) and PKCS#1
/// RSA (`BEGIN RSA PRIVATE KEY`, as mitmproxy writes it), which is rewrapped as PKCS#8 for ring.
pub(crate) fn read_ca_file(path: &Path) -> Result<CaFile, CaError> {
    let bytes = fs::read(path).map_err(io_error("reading CA file", path))?;
    let mut key = None;
    let mut cert = None;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        let (kind, der) = section.map_err(|source| CaError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
        match kind {
            SectionKind::Certificate if cert.is_none() => cert = Some(der),
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
                if key.is_none() =>
            {
                key = Some(signing_key(path, kind, der)?);
            }
            _ => {}
        }
    }
    let incomplete = |missing| CaError::Incomplete {
        path: path.to_path_buf(),
        missing,
    };
    let key = key.ok_or_else(|| incomplete("private key"))?;
    let cert = CertificateDer::from(cert.ok_or_else(|| incomplete("certificate"))?);
    check_key_matches(path, &key, &cert)?;
    Ok(CaFile { key, cert })
}

fn signing_key(path: &Path, kind: SectionKind, der: Vec<u8>) -> Result<KeyPair, CaError> {
    let unsupported = |reason: String| CaError::UnsupportedKey {
        path: path.to_path_buf(),
        reason,
    };
    match kind {
        SectionKind::PrivateKey => KeyPair::try_from(&PrivatePkcs8KeyDer::from(der))
            .map_err(|e| unsupported(format!("PKCS#8 key: {e}"))),
        SectionKind::RsaPrivateKey => KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(rsa_pkcs1_to_pkcs8(&der)),
            &rcgen::PKCS_RSA_SHA256,
        )
        .map_err(|e| unsupported(format!("PKCS#1 RSA key: {e}"))),
        _ => Err(unsupported(
            "SEC1 EC keys are not supported; convert with `openssl pkcs8 -topk8 -nocrypt`".into(),
        )),
    }
}

/// Leaves signed with a key that does not belong to the CA certificate would fail every
/// handshake with an opaque "bad signature", so the mismatch is reported at load time.
fn check_key_matches(path: &Path, key: &KeyPair, cert: &CertificateDer<'_>) -> Result<(), CaError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| CaError::Parse(format!("CA certificate in {}: {e}", path.display())))?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(CaError::UnsupportedKey {
            path: path.to_path_buf(),
            reason: "the private key does not belong to the certificate".into(),
        });
    }
    Ok(())
}

/// Wraps a PKCS#1 `RSAPrivateKey` in a PKCS#8 `PrivateKeyInfo` (RFC 5208 section 5):
/// SEQUENCE { INTEGER 0, SEQUENCE { rsaEncryption, NULL }, OCTET STRING pkcs1 }.
fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    // INTEGER 0; SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const VERSION_AND_ALGORITHM: [u8; 18] = [
        0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x01, 0x05, 0x00,
    ];
    let mut octets = vec![0x04];
    octets.extend(der_length(pkcs1.len()));
    octets.extend_from_slice(pkcs1);
    let body_len = VERSION_AND_ALGORITHM.len() + octets.len();
    let mut out = vec![0x30];
    out.extend(der_length(body_len));
    out.extend_from_slice(&VERSION_AND_ALGORITHM);
    out.extend(octets);
    out
}

/// A DER length: short form below 128, otherwise 0x80|n followed by n big-endian bytes.
fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        // Fits in seven bits, checked just above.
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::{der_length, shared_mode, write_private_new};

    #[test]
    fn a_key_file_open_to_others_is_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ca.pem");
        assert!(write_private_new(&key, b"key").unwrap());
        assert_eq!(shared_mode(&key), None, "written 0600");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(shared_mode(&key), Some(0o644));
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_length(5), vec![5]);
        assert_eq!(der_length(0x80), vec![0x81, 0x80]);
        assert_eq!(der_length(1190), vec![0x82, 0x04, 0xa6]);
    }
}
