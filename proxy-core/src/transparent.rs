//! Transparent mode's one system detail: where a redirected connection was going. A firewall
//! `REDIRECT` (nftables `redirect to :PORT`, iptables `-j REDIRECT`) rewrites the destination of
//! a connection to the proxy's listener and keeps the original in the connection tracking
//! table, which `getsockopt(SO_ORIGINAL_DST)` reads (`IP6T_SO_ORIGINAL_DST` for IPv6).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use tokio::net::TcpStream;

/// `SO_ORIGINAL_DST` (linux/netfilter_ipv4.h) and `IP6T_SO_ORIGINAL_DST`
/// (linux/netfilter_ipv6/ip6_tables.h): the same number at different levels.
const SO_ORIGINAL_DST: libc::c_int = 80;

/// Where the client sent this connection before it was redirected to the listener. An error
/// when the connection was not redirected (the kernel has no record of it).
pub(crate) fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    let fd = stream.as_raw_fd();
    let original = if local.is_ipv4() {
        // SAFETY: an all-zero sockaddr_in is valid; getsockopt writes at most `len` bytes into
        // it and says how many.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `fd` is the stream's open socket; `addr` and `len` are valid for writes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IP,
                SO_ORIGINAL_DST,
                (&raw mut addr).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            u16::from_be(addr.sin_port),
        ))
    } else {
        // SAFETY: as above, for sockaddr_in6.
        let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: as above.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IPV6,
                SO_ORIGINAL_DST,
                (&raw mut addr).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(addr.sin6_addr.s6_addr),
            u16::from_be(addr.sin6_port),
            0,
            addr.sin6_scope_id,
        ))
    };
    if original == local {
        // No NAT entry rewrote it (some kernels answer with the local address).
        return Err(io::Error::other("the connection was not redirected"));
    }
    Ok(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_that_was_not_redirected_has_no_original_destination() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert!(original_destination(&server).is_err());
    }
}
