//! `--ignore-hosts`, `--allow-hosts` and `--tcp-hosts`: which tunnels are intercepted, relayed
//! untouched, or carry raw TCP.

use regex::{Regex, RegexBuilder};

use crate::error::SetupError;

/// Decides which hosts are intercepted (`--ignore-hosts`, `--allow-hosts`) and which carry raw
/// TCP (`--tcp-hosts`): patterns are searched case-insensitively in `host:port`.
pub(crate) struct HostMatcher {
    ignore: Vec<Regex>,
    allow: Vec<Regex>,
    tcp: Vec<Regex>,
}

impl HostMatcher {
    pub(crate) fn new(
        ignore: &[String],
        allow: &[String],
        tcp: &[String],
    ) -> Result<Self, SetupError> {
        let compile = |patterns: &[String]| {
            patterns
                .iter()
                .map(|p| {
                    RegexBuilder::new(p)
                        .case_insensitive(true)
                        .build()
                        .map_err(|source| SetupError::HostPattern {
                            pattern: p.clone(),
                            source,
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            ignore: compile(ignore)?,
            allow: compile(allow)?,
            tcp: compile(tcp)?,
        })
    }

    /// True when a tunnel to `host:port` is a raw TCP flow whatever the client sends.
    pub(crate) fn is_tcp(&self, host: &str, port: u16) -> bool {
        !self.tcp.is_empty() && {
            let target = format!("{host}:{port}");
            self.tcp.iter().any(|r| r.is_match(&target))
        }
    }

    /// True when traffic to `host:port` is intercepted rather than relayed untouched.
    pub(crate) fn intercept(&self, host: &str, port: u16) -> bool {
        let target = format!("{host}:{port}");
        if !self.allow.is_empty() {
            return self.allow.iter().any(|r| r.is_match(&target));
        }
        !self.ignore.iter().any(|r| r.is_match(&target))
    }
}
