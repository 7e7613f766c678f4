//! `connection_info`: the two ends of a connected socket, from the kernel
//! (getpeername(2)/getsockname(2)); `accept`: a new connection from a listening socket
//! (accept4(2)), non-blocking, close-on-exec, with its peer's address. The only code in
//! this crate that talks to the OS.

use std::ffi::CStr;
use std::mem::{size_of, MaybeUninit};

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A numeric IPv4/IPv6 host (IPv4-mapped IPv6 shown as IPv4) and port.
    Inet { host: String, port: u16 },
    /// A unix socket path as the kernel reports it (may be empty; abstract names keep their
    /// leading NUL).
    Unix(Vec<u8>),
    /// Some other address family.
    Other,
}

/// Peer and local ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub peer: Endpoint,
    pub local: Endpoint,
}

extern "C" {
    // POSIX, in every libc; the `libc` crate does not declare it
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

type AddrFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// One address of `fd`; None when the call fails (not a socket, not connected, closed).
fn address(fd: i32, f: AddrFn) -> Option<(libc::sockaddr_storage, usize)> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is a writable sockaddr_storage of `len` bytes and `len` is a valid
    // pointer; the kernel writes at most `len` bytes and updates `len`. An invalid `fd` only
    // makes the call fail with EBADF/ENOTSOCK.
    let rc = unsafe { f(fd, storage.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    // SAFETY: zero-initialised above, so every byte is initialised whatever the kernel wrote.
    let storage = unsafe { storage.assume_init() };
    Some((storage, (len as usize).min(size_of::<libc::sockaddr_storage>())))
}

/// Numeric text of an address (inet_ntop(3), as Perl's `Socket::inet_ntop`).
fn ntop(family: libc::c_int, addr: *const libc::c_void) -> String {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: `addr` points to an in_addr/in6_addr matching `family` (the callers take it
    // from a sockaddr of that family), and `buf` has room for INET6_ADDRSTRLEN (46) bytes.
    let p = unsafe { inet_ntop(family, addr, buf.as_mut_ptr(), buf.len() as libc::socklen_t) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: inet_ntop succeeded, so `buf` holds a NUL-terminated string.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// "::ffff:a.b.c.d" is shown as "a.b.c.d".
fn unmap_ipv4(host: String) -> String {
    let b = host.as_bytes();
    if b.len() > 7 && b[..7].eq_ignore_ascii_case(b"::ffff:") {
        let rest = &b[7..];
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 && rest.get(digits) == Some(&b'.') {
            return host[7..].to_string();
        }
    }
    host
}

fn endpoint(storage: &libc::sockaddr_storage, len: usize) -> Endpoint {
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family is AF_INET and the kernel wrote a whole sockaddr_in;
            // sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let host = ntop(libc::AF_INET, (&sin.sin_addr as *const libc::in_addr).cast());
            Endpoint::Inet { host, port: u16::from_be(sin.sin_port) }
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for AF_INET6 and sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let host = ntop(libc::AF_INET6, (&sin6.sin6_addr as *const libc::in6_addr).cast());
            Endpoint::Inet { host: unmap_ipv4(host), port: u16::from_be(sin6.sin6_port) }
        }
        libc::AF_UNIX => {
            // SAFETY: the family is AF_UNIX; sockaddr_un fits in sockaddr_storage.
            let sun = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_un>() };
            let offset = size_of::<libc::sa_family_t>();
            let n = len.saturating_sub(offset).min(sun.sun_path.len());
            let path: Vec<u8> = sun.sun_path[..n].iter().map(|&c| c as u8).collect();
            // A filesystem path ends at its NUL; an abstract name (leading NUL) is all of it
            let path = match path.first() {
                Some(0) | None => path,
                Some(_) => path.iter().copied().take_while(|&c| c != 0).collect(),
            };
            Endpoint::Unix(path)
        }
        _ => Endpoint::Other,
    }
}

/// A connection accepted on the listening socket `lfd`: its descriptor (non-blocking and
/// close-on-exec, as one accept4(2) makes it), its peer, and with `want_local` its own
/// address too (a listener bound to a wildcard address has no single one); with
/// `nodelay`, Nagle's algorithm off (TCP_NODELAY; an error there is ignored: a Unix
/// socket has no such option). Err(errno) when accept4 fails (EAGAIN: none waiting).
pub fn accept(lfd: i32, nodelay: bool, want_local: bool) -> Result<(i32, Endpoint, Option<Endpoint>), i32> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is a writable sockaddr_storage of `len` bytes and `len` a valid
    // pointer: the kernel writes at most `len` bytes and updates `len`. A bad `lfd` only
    // makes the call fail (EBADF, ENOTSOCK, EINVAL).
    let fd = unsafe {
        libc::accept4(lfd, storage.as_mut_ptr().cast(), &mut len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    // SAFETY: zero-initialised above, so every byte is initialised whatever the kernel wrote.
    let storage = unsafe { storage.assume_init() };
    let peer = endpoint(&storage, (len as usize).min(size_of::<libc::sockaddr_storage>()));
    if nodelay {
        let one: libc::c_int = 1;
        // SAFETY: `fd` is the socket just accepted; `one` is a readable int of the size
        // given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let local = if want_local { address(fd, libc::getsockname).map(|(a, l)| endpoint(&a, l)) } else { None };
    Ok((fd, peer, local))
}

/// Both ends of the socket `fd`, or None if it is not a connected socket.
pub fn connection_info(fd: i32) -> Option<ConnInfo> {
    if fd < 0 {
        return None;
    }
    let (local, local_len) = address(fd, libc::getsockname)?;
    let (peer, peer_len) = address(fd, libc::getpeername)?;
    Some(ConnInfo { peer: endpoint(&peer, peer_len), local: endpoint(&local, local_len) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn tcp_v4() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let info = connection_info(s.as_raw_fd()).unwrap();
        assert_eq!(info.local, Endpoint::Inet { host: "127.0.0.1".into(), port });
        let cport = c.local_addr().unwrap().port();
        assert_eq!(info.peer, Endpoint::Inet { host: "127.0.0.1".into(), port: cport });
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        // A listening socket has no peer
        assert_eq!(connection_info(l.as_raw_fd()), None);
    }

    #[test]
    fn tcp_v6_and_mapped() {
        let Ok(l) = TcpListener::bind("[::]:0") else { return };
        let port = l.local_addr().unwrap().port();
        if let Ok(_c) = TcpStream::connect(("::1", port)) {
            let (s, _) = l.accept().unwrap();
            let info = connection_info(s.as_raw_fd()).unwrap();
            assert_eq!(info.local, Endpoint::Inet { host: "::1".into(), port });
        }
        // A dual-stack listener sees an IPv4 client as ::ffff:127.0.0.1
        if let Ok(_c) = TcpStream::connect(("127.0.0.1", port)) {
            let (s, _) = l.accept().unwrap();
            let info = connection_info(s.as_raw_fd()).unwrap();
            assert_eq!(info.local, Endpoint::Inet { host: "127.0.0.1".into(), port });
        }
    }

    #[test]
    fn unix_sockets() {
        let (a, _b) = UnixStream::pair().unwrap();
        let info = connection_info(a.as_raw_fd()).unwrap();
        assert_eq!(info.local, Endpoint::Unix(vec![]));
        let dir = std::env::temp_dir().join(format!("pagi-conninfo-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let l = UnixListener::bind(&dir).unwrap();
        let _c = UnixStream::connect(&dir).unwrap();
        let (s, _) = l.accept().unwrap();
        let info = connection_info(s.as_raw_fd()).unwrap();
        assert_eq!(info.local, Endpoint::Unix(dir.as_os_str().as_encoded_bytes().to_vec()));
        assert_eq!(info.peer, Endpoint::Unix(vec![]));
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn not_sockets() {
        assert_eq!(connection_info(-1), None);
        assert_eq!(connection_info(1_000_000), None);
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(connection_info(f.as_raw_fd()), None);
    }

    #[test]
    fn accepting() {
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsRawFd;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        assert_eq!(accept(l.as_raw_fd(), true, false).unwrap_err(), libc::EAGAIN, "none waiting: EAGAIN");
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (fd, peer, local) = accept(l.as_raw_fd(), true, true).unwrap();
        assert_eq!(peer, Endpoint::Inet { host: "127.0.0.1".into(), port: c.local_addr().unwrap().port() });
        assert_eq!(local, Some(Endpoint::Inet { host: "127.0.0.1".into(), port: l.local_addr().unwrap().port() }));
        // SAFETY: `fd` is the accepted socket, ours to inspect and close.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            assert!(flags & libc::O_NONBLOCK != 0, "non-blocking");
            assert!(libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0, "close-on-exec");
            let mut v: libc::c_int = 0;
            let mut n = size_of::<libc::c_int>() as libc::socklen_t;
            libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&mut v as *mut libc::c_int).cast(), &mut n);
            assert_eq!(v, 1, "TCP_NODELAY");
            libc::close(fd);
        }
        assert_eq!(accept(-1, false, false).unwrap_err(), libc::EBADF);
    }

    #[test]
    fn unmapping() {
        assert_eq!(unmap_ipv4("::ffff:10.0.0.1".into()), "10.0.0.1");
        assert_eq!(unmap_ipv4("::FFFF:10.0.0.1".into()), "10.0.0.1");
        assert_eq!(unmap_ipv4("::ffff:a00:1".into()), "::ffff:a00:1");
        assert_eq!(unmap_ipv4("::1".into()), "::1");
    }
}
