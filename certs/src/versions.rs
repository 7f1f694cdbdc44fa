//! TLS version bounds with mitmproxy's names (`tls_version_client_min`, `..._max`,
//! `tls_version_server_min`, `..._max`), turned into the protocol versions rustls offers.
//!
//! rustls speaks TLS 1.2 and TLS 1.3 only. A minimum below TLS 1.2 (`SSL3`, `TLS1`, `TLS1_1`)
//! cannot be honoured: it is accepted with a warning ([`VersionBounds::warning`]), as mitmproxy
//! warns when its OpenSSL build lacks a version. A maximum below TLS 1.2 leaves no version to
//! speak and is an error, as is a minimum above the maximum.

use std::fmt;
use std::str::FromStr;

use rustls::SupportedProtocolVersion;

use crate::CaError;

/// One of mitmproxy's TLS version names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TlsVersion {
    /// No bound (`UNBOUNDED`).
    #[default]
    Unbounded,
    /// SSL 3.0 (`SSL3`).
    Ssl3,
    /// TLS 1.0 (`TLS1`).
    Tls1,
    /// TLS 1.1 (`TLS1_1`).
    Tls1_1,
    /// TLS 1.2 (`TLS1_2`).
    Tls1_2,
    /// TLS 1.3 (`TLS1_3`).
    Tls1_3,
}

impl TlsVersion {
    /// Every name, in mitmproxy's order (for error messages and docs).
    pub const NAMES: [&'static str; 6] =
        ["UNBOUNDED", "SSL3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"];

    /// mitmproxy's name of this version.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Unbounded => "UNBOUNDED",
            TlsVersion::Ssl3 => "SSL3",
            TlsVersion::Tls1 => "TLS1",
            TlsVersion::Tls1_1 => "TLS1_1",
            TlsVersion::Tls1_2 => "TLS1_2",
            TlsVersion::Tls1_3 => "TLS1_3",
        }
    }

    /// Older than anything rustls speaks.
    fn is_legacy(self) -> bool {
        matches!(
            self,
            TlsVersion::Ssl3 | TlsVersion::Tls1 | TlsVersion::Tls1_1
        )
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TlsVersion {
    type Err = CaError;

    /// Parses one of [`TlsVersion::NAMES`] (exactly, as mitmproxy's choices).
    fn from_str(text: &str) -> Result<Self, CaError> {
        let version = match text.trim() {
            "UNBOUNDED" => TlsVersion::Unbounded,
            "SSL3" => TlsVersion::Ssl3,
            "TLS1" => TlsVersion::Tls1,
            "TLS1_1" => TlsVersion::Tls1_1,
            "TLS1_2" => TlsVersion::Tls1_2,
            "TLS1_3" => TlsVersion::Tls1_3,
            other => {
                return Err(CaError::TlsVersion(format!(
                    "{other:?} is not a TLS version; expected one of {}",
                    TlsVersion::NAMES.join(", ")
                )));
            }
        };
        Ok(version)
    }
}

/// The versions one side of the proxy may speak: mitmproxy's defaults are `TLS1_2` and
/// `UNBOUNDED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionBounds {
    /// The oldest version accepted.
    pub min: TlsVersion,
    /// The newest version offered.
    pub max: TlsVersion,
}

impl Default for VersionBounds {
    fn default() -> Self {
        Self {
            min: TlsVersion::Tls1_2,
            max: TlsVersion::Unbounded,
        }
    }
}

impl VersionBounds {
    /// The rustls versions within the bounds, newest first. Fails when none is left: a maximum
    /// below TLS 1.2, or a minimum above the maximum.
    pub fn rustls_versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, CaError> {
        if self.max.is_legacy() {
            return Err(CaError::TlsVersion(format!(
                "a maximum of {} leaves no version to speak: flowtap (rustls) speaks only TLS1_2 \
                 and TLS1_3",
                self.max
            )));
        }
        if self.max != TlsVersion::Unbounded && self.min > self.max {
            return Err(CaError::TlsVersion(format!(
                "the minimum {} is above the maximum {}",
                self.min, self.max
            )));
        }
        let allowed = |v: TlsVersion| {
            (self.min == TlsVersion::Unbounded || self.min <= v)
                && (self.max == TlsVersion::Unbounded || v <= self.max)
        };
        let mut versions = Vec::new();
        if allowed(TlsVersion::Tls1_3) {
            versions.push(&rustls::version::TLS13);
        }
        if allowed(TlsVersion::Tls1_2) {
            versions.push(&rustls::version::TLS12);
        }
        Ok(versions)
    }

    /// A note for the log when the minimum asks for versions rustls cannot speak (they stay
    /// refused), else None.
    pub fn warning(&self, option: &str) -> Option<String> {
        self.min.is_legacy().then(|| {
            format!(
                "{option} has been set to {}, but flowtap (rustls) speaks only TLS1_2 and TLS1_3: \
                 peers limited to older versions still fail their handshake",
                self.min
            )
        })
    }

    /// Whether these are the defaults (then no hint is added to handshake errors).
    pub fn is_default(&self) -> bool {
        self.rustls_versions().is_ok_and(|v| v.len() == 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(min: &str, max: &str) -> VersionBounds {
        VersionBounds {
            min: min.parse().expect("min"),
            max: max.parse().expect("max"),
        }
    }

    fn names(b: VersionBounds) -> Vec<String> {
        b.rustls_versions()
            .expect("versions")
            .iter()
            .map(|v| format!("{:?}", v.version))
            .collect()
    }

    #[test]
    fn bounds_select_rustls_versions() {
        assert_eq!(names(VersionBounds::default()), ["TLSv1_3", "TLSv1_2"]);
        assert_eq!(names(bounds("TLS1_3", "UNBOUNDED")), ["TLSv1_3"]);
        assert_eq!(names(bounds("TLS1_2", "TLS1_2")), ["TLSv1_2"]);
        assert_eq!(names(bounds("UNBOUNDED", "TLS1_2")), ["TLSv1_2"]);
        assert_eq!(names(bounds("TLS1", "TLS1_3")), ["TLSv1_3", "TLSv1_2"]);
        assert!(VersionBounds::default().is_default());
        assert!(!bounds("TLS1_3", "UNBOUNDED").is_default());
    }

    #[test]
    fn impossible_bounds_are_errors_and_legacy_minimums_warn() {
        assert!(bounds("TLS1_2", "TLS1_1").rustls_versions().is_err());
        assert!(bounds("UNBOUNDED", "SSL3").rustls_versions().is_err());
        assert!(bounds("TLS1_3", "TLS1_2").rustls_versions().is_err());
        assert!(bounds("TLS1", "UNBOUNDED").warning("x").is_some());
        assert!(bounds("UNBOUNDED", "UNBOUNDED").warning("x").is_none());
        assert!(bounds("TLS1_2", "UNBOUNDED").warning("x").is_none());
        assert!("TLS1_4".parse::<TlsVersion>().is_err());
        assert!("tls1_2".parse::<TlsVersion>().is_err());
    }
}
