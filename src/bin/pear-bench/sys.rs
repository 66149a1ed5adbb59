//! Operating-system helpers for the load generator: the open-file limit and sockets
//! bound to a chosen loopback source address.
//!
//! Owns the only `unsafe` of the tool (two libc calls). Must never touch anything but
//! this process's own limits and the sockets it creates.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// First and last loopback source address used for idle connections (127.0.0.2..=250).
pub const SOURCE_FIRST: u8 = 2;
pub const SOURCE_LAST: u8 = 250;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; the pointer is valid.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct; the pointer is valid.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// The `n`-th loopback source address of the 127.0.0.2..=250 rotation.
pub fn source_addr(n: usize) -> Ipv4Addr {
    let span = usize::from(SOURCE_LAST - SOURCE_FIRST) + 1;
    let last = u8::try_from(n % span).unwrap_or(0) + SOURCE_FIRST;
    Ipv4Addr::new(127, 0, 0, last)
}

/// Starts a non-blocking connect to `target` from `source` (any port). The port is
/// chosen at connect time (IP_BIND_ADDRESS_NO_PORT), so each source address gives a
/// whole ephemeral port range per destination.
pub fn connect_from(source: Ipv4Addr, target: SocketAddr) -> io::Result<std::net::TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    let one: libc::c_int = 1;
    // SAFETY: the fd is open and owned by `socket`; the option value is a valid c_int
    // whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
    match socket.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_rotate_within_range() {
        assert_eq!(source_addr(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(248), Ipv4Addr::new(127, 0, 0, 250));
        assert_eq!(source_addr(249), Ipv4Addr::new(127, 0, 0, 2));
    }
}
