//! Strings the codec recognises: header field names (lowercase, as the result carries
//! them) and request methods. An id is an index into [`KNOWN`] plus one (0: unknown).
//!
//! The ids cross the C ABI so that the Perl glue can hand out one shared, copy-on-write
//! string per known name instead of allocating a new one per request.

/// Every known string; header names first, then methods.
pub const KNOWN: &[&str] = &[
    // Header names the codec interprets
    "host",
    "cookie",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "accept",
    "expect",
    // Frequent ones
    "user-agent",
    "accept-language",
    "accept-encoding",
    "accept-charset",
    "referer",
    "origin",
    "content-type",
    "cache-control",
    "pragma",
    "authorization",
    "if-none-match",
    "if-modified-since",
    "range",
    "te",
    "dnt",
    "priority",
    "upgrade-insecure-requests",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-fetch-user",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-requested-with",
    "keep-alive",
    // Methods (RFC 9110 9.3, plus PATCH)
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
];

pub const HOST: u16 = 1;
pub const COOKIE: u16 = 2;
pub const CONTENT_LENGTH: u16 = 3;
pub const TRANSFER_ENCODING: u16 = 4;
pub const CONNECTION: u16 = 5;
pub const UPGRADE: u16 = 6;
pub const SEC_WEBSOCKET_KEY: u16 = 7;
pub const SEC_WEBSOCKET_VERSION: u16 = 8;
pub const ACCEPT: u16 = 9;
pub const EXPECT: u16 = 10;

/// The first method id.
pub const FIRST_METHOD: u16 = 43;

/// The string of an id.
pub fn known(id: u16) -> Option<&'static str> {
    KNOWN.get(usize::from(id).wrapping_sub(1)).copied()
}

/// The id of a lowercase header name, 0 if it is not known.
#[inline]
pub fn name_id(lower: &[u8]) -> u16 {
    match lower {
        b"host" => 1,
        b"cookie" => 2,
        b"content-length" => 3,
        b"transfer-encoding" => 4,
        b"connection" => 5,
        b"upgrade" => 6,
        b"sec-websocket-key" => 7,
        b"sec-websocket-version" => 8,
        b"accept" => 9,
        b"expect" => 10,
        b"user-agent" => 11,
        b"accept-language" => 12,
        b"accept-encoding" => 13,
        b"accept-charset" => 14,
        b"referer" => 15,
        b"origin" => 16,
        b"content-type" => 17,
        b"cache-control" => 18,
        b"pragma" => 19,
        b"authorization" => 20,
        b"if-none-match" => 21,
        b"if-modified-since" => 22,
        b"range" => 23,
        b"te" => 24,
        b"dnt" => 25,
        b"priority" => 26,
        b"upgrade-insecure-requests" => 27,
        b"sec-fetch-site" => 28,
        b"sec-fetch-mode" => 29,
        b"sec-fetch-dest" => 30,
        b"sec-fetch-user" => 31,
        b"sec-ch-ua" => 32,
        b"sec-ch-ua-mobile" => 33,
        b"sec-ch-ua-platform" => 34,
        b"sec-websocket-protocol" => 35,
        b"sec-websocket-extensions" => 36,
        b"x-forwarded-for" => 37,
        b"x-forwarded-proto" => 38,
        b"x-forwarded-host" => 39,
        b"x-real-ip" => 40,
        b"x-requested-with" => 41,
        b"keep-alive" => 42,
        _ => 0,
    }
}

/// The id of a method (case-sensitive, as methods are), 0 if it is not known.
#[inline]
pub fn method_id(method: &[u8]) -> u16 {
    match method {
        b"GET" => 43,
        b"HEAD" => 44,
        b"POST" => 45,
        b"PUT" => 46,
        b"DELETE" => 47,
        b"CONNECT" => 48,
        b"OPTIONS" => 49,
        b"TRACE" => 50,
        b"PATCH" => 51,
        _ => 0,
    }
}

/// The longest known header name.
pub const MAX_NAME_LEN: usize = 25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_the_table() {
        for (i, s) in KNOWN.iter().enumerate() {
            let id = i as u16 + 1;
            assert_eq!(known(id), Some(*s));
            if id < FIRST_METHOD {
                assert_eq!(name_id(s.as_bytes()), id, "{s}");
                assert_eq!(method_id(s.as_bytes()), 0);
                assert!(s.len() <= MAX_NAME_LEN);
                assert!(s.bytes().all(|b| crate::chars::is_tchar(b) && !b.is_ascii_uppercase()));
            } else {
                assert_eq!(method_id(s.as_bytes()), id, "{s}");
                assert_eq!(name_id(s.as_bytes()), 0);
            }
        }
        assert_eq!(known(0), None);
        assert_eq!(known(KNOWN.len() as u16 + 1), None);
        assert_eq!(name_id(b"Host"), 0);
        assert_eq!(method_id(b"get"), 0);
        let constants = [HOST, COOKIE, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, UPGRADE,
            SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, ACCEPT, EXPECT];
        let names = ["host", "cookie", "content-length", "transfer-encoding", "connection", "upgrade",
            "sec-websocket-key", "sec-websocket-version", "accept", "expect"];
        for (c, n) in constants.iter().zip(names) {
            assert_eq!(known(*c), Some(n));
        }
        assert_eq!(known(FIRST_METHOD), Some("GET"));
        assert_eq!(name_id(b""), 0);
        assert_eq!(name_id(&[b'x'; 100]), 0);
        for near in ["hos", "hostt", "cookies", "x-forwarded-fo", "accept-languagx", "a", "-"] {
            assert_eq!(name_id(near.as_bytes()), 0, "{near}");
        }
    }
}
