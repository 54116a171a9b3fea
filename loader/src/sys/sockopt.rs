//! Socket options weir reads itself: the original destination of a connection captured by a
//! transparent redirect (what a proxy asks; `weir demo` plays one).

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

/// `SO_ORIGINAL_DST` (level `SOL_IP`) and `IP6T_SO_ORIGINAL_DST` (level `SOL_IPV6`).
const SO_ORIGINAL_DST: libc::c_int = 80;

/// The destination `conn` (an accepted socket) was originally sent to, as iptables `REDIRECT`
/// or weir's mesh reports it: `getsockopt(SOL_IP, SO_ORIGINAL_DST)` on an IPv4 socket,
/// `getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)` on an IPv6 one. A v4-mapped answer is IPv4.
///
/// # Errors
/// The `getsockopt` error (ENOENT: the connection was not redirected).
pub fn original_dst(conn: &TcpStream) -> io::Result<SocketAddr> {
    let fd = conn.as_raw_fd();
    if conn.local_addr()?.is_ipv4() {
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: the buffer and its length describe `sin`, which outlives the call.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IP,
                SO_ORIGINAL_DST,
                (&raw mut sin).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SocketAddr::from((
            Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
            u16::from_be(sin.sin_port),
        )))
    } else {
        // SAFETY: all-zero is a valid sockaddr_in6.
        let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: as above, for `sin6`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IPV6,
                SO_ORIGINAL_DST,
                (&raw mut sin6).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        let port = u16::from_be(sin6.sin6_port);
        Ok(match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, port)),
            None => SocketAddr::from((ip, port)),
        })
    }
}
