//! `block_global`, `block_private` (mitmproxy's `block` addon: client connections by source
//! address) and `block_list` (requests matching a filter answered with a status, or killed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use flowtap_flow::Filter;
use flowtap_proto::v1::Flow;
use flowtap_proto::v1::value::Kind;

use super::{BuiltinError, BuiltinOptions, SERVER, make_response, spec};

/// mitmproxy's `NO_RESPONSE`: close the connection without answering.
const NO_RESPONSE: u16 = 444;

#[derive(Debug)]
pub(super) struct Block {
    global: bool,
    private: bool,
    list: Vec<(Filter, u16)>,
}

impl Block {
    pub(super) fn new(options: &BuiltinOptions) -> Result<Block, BuiltinError> {
        let list = options
            .block_list
            .iter()
            .map(|option| {
                parse(option).map_err(|e| {
                    BuiltinError(format!("Cannot parse block_list option {option}: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Block {
            global: options.block_global,
            private: options.block_private,
            list,
        })
    }

    /// No request is blocked (connections may still be).
    pub(super) fn is_idle(&self) -> bool {
        self.list.is_empty()
    }

    /// The error of a client connection that is refused; loopback clients never are.
    pub(super) fn client_connected(&self, peer: IpAddr) -> Option<&'static str> {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if peer.is_loopback() {
            return None;
        }
        // mitmproxy checks both and keeps the last verdict: `block_global` wins.
        let mut error = None;
        if self.private && is_private(peer) {
            tracing::warn!("Client connection from {peer} killed by block_private option.");
            error = Some("Connection killed by block_private.");
        }
        if self.global && is_global(peer) {
            tracing::warn!("Client connection from {peer} killed by block_global option.");
            error = Some("Connection killed by block_global.");
        }
        error
    }

    /// `block_list` in `request`: the first matching spec answers (or kills, for 444).
    pub(super) fn request(&self, flow: &mut Flow) {
        if flow.response.is_some() || flow.error.is_some() || !flow.live {
            return;
        }
        let Some(&(_, status)) = self.list.iter().find(|(filter, _)| filter.matches(flow)) else {
            return;
        };
        super::set_metadata(flow, "blocklisted", Kind::Bool(true));
        if status == NO_RESPONSE {
            crate::flow::set_error(flow, crate::flow::KILLED_MESSAGE);
        } else {
            flow.response = Some(make_response(status, Bytes::new(), &[("Server", SERVER)]));
        }
    }
}

/// `/flow-filter/status-code`, any separator.
fn parse(option: &str) -> Result<(Filter, u16), String> {
    let parts = spec::split(option, 3)?;
    let [filter, status] = parts.as_slice() else {
        return Err("Invalid number of parameters (2 are expected)".into());
    };
    let status: u16 = status
        .trim()
        .parse()
        .ok()
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| format!("Invalid HTTP status code: {status}"))?;
    Ok((spec::parse_filter(filter)?, status))
}

/// Python's `ipaddress` `is_private` (3.12 and later), after IPv4-mapped addresses are
/// unwrapped.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

/// Python's `ipaddress` `is_global`: not private and, for IPv4, not shared address space
/// (100.64.0.0/10).
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !in_v4(v4, [100, 64, 0, 0], 10) && !is_private_v4(v4),
        IpAddr::V6(v6) => !is_private_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    const NETS: [([u8; 4], u32); 14] = [
        ([0, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([127, 0, 0, 0], 8),
        ([169, 254, 0, 0], 16),
        ([172, 16, 0, 0], 12),
        ([192, 0, 0, 0], 29),
        ([192, 0, 0, 170], 31),
        ([192, 0, 2, 0], 24),
        ([192, 168, 0, 0], 16),
        ([198, 18, 0, 0], 15),
        ([198, 51, 100, 0], 24),
        ([203, 0, 113, 0], 24),
        ([240, 0, 0, 0], 4),
        ([255, 255, 255, 255], 32),
    ];
    let exception = in_v4(ip, [192, 0, 0, 9], 32) || in_v4(ip, [192, 0, 0, 10], 32);
    !exception && NETS.iter().any(|&(net, bits)| in_v4(ip, net, bits))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    const NETS: [([u16; 8], u32); 10] = [
        ([0, 0, 0, 0, 0, 0, 0, 1], 128),
        ([0, 0, 0, 0, 0, 0, 0, 0], 128),
        ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
    ];
    const EXCEPTIONS: [([u16; 8], u32); 6] = [
        ([0x2001, 1, 0, 0, 0, 0, 0, 1], 128),
        ([0x2001, 1, 0, 0, 0, 0, 0, 2], 128),
        ([0x2001, 3, 0, 0, 0, 0, 0, 0], 32),
        ([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48),
        ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
        ([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28),
    ];
    !EXCEPTIONS.iter().any(|&(net, bits)| in_v6(ip, net, bits))
        && NETS.iter().any(|&(net, bits)| in_v6(ip, net, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_classified_as_python_does() {
        for private in [
            "10.1.2.3",
            "192.168.0.1",
            "172.31.255.255",
            "169.254.1.1",
            "fd00::1",
        ] {
            assert!(
                is_private(ip(private)) && !is_global(ip(private)),
                "{private}"
            );
        }
        for global in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "192.0.0.9"] {
            assert!(is_global(ip(global)) && !is_private(ip(global)), "{global}");
        }
        // Shared address space is neither.
        assert!(!is_global(ip("100.64.0.1")) && !is_private(ip("100.64.0.1")));
    }

    #[test]
    fn connections_are_blocked_by_source() {
        let mut options = BuiltinOptions::default();
        let block = Block::new(&options).unwrap();
        assert_eq!(block.client_connected(ip("127.0.0.1")), None);
        assert_eq!(block.client_connected(ip("::1")), None);
        assert_eq!(block.client_connected(ip("10.0.0.1")), None);
        assert!(block.client_connected(ip("8.8.8.8")).is_some());
        assert!(block.client_connected(ip("::ffff:8.8.8.8")).is_some());
        options.block_global = false;
        options.block_private = true;
        let block = Block::new(&options).unwrap();
        assert_eq!(
            block.client_connected(ip("10.0.0.1")),
            Some("Connection killed by block_private.")
        );
        assert_eq!(block.client_connected(ip("8.8.8.8")), None);
    }

    #[test]
    fn block_list_specs() {
        assert!(parse("/~q/404").is_ok());
        assert!(parse(":~d example.com:444").is_ok());
        assert_eq!(
            parse("/~q/abc").unwrap_err(),
            "Invalid HTTP status code: abc"
        );
        assert!(parse("/~q").is_err());
        assert!(parse("/~q/404/x").is_err());
    }
}
