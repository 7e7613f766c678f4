//! The closed sets of errors: the HTTP/1.1 codec's [`ErrorKind`] (doc/codec.md, "Error
//! kinds"), the WebSocket codec's [`crate::ws::WsError`], HTTP/2's
//! [`crate::h2::H2Error`] and [`crate::h2::H2Refusal`], and the application misuse the
//! codecs report, [`crate::response::AppErrorKind`].
//!
//! Both come from THE error table, `lib/PAGI/Server/Protocol/errors.tsv` (kind, number,
//! message), the only place a kind is written: `build.rs` turns its rows into
//! `error_table!` invocations, and the Perl side (`PAGI::Server::Protocol::Errors`)
//! reads the same file. The XS glue reads these enums through `pagi_error_info`.

/// Declares an error enum from its rows, as `build.rs` writes them from `errors.tsv`.
/// Each row: the variant and its ABI code (`0` means "no error" across the C ABI, so
/// codes start at 1), the `error` kind and the `message` (C strings: they cross to the
/// glue as they are), and the number the server answers with, through the accessor
/// named after the enum.
macro_rules! error_table {
    (
        $(#[$meta:meta])*
        pub enum $name:ident, fn $number:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, $kind:literal, $message:literal, $num:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[repr(i32)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $code, )+
        }

        impl $name {
            /// Every kind, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code used across the C ABI.
            pub fn code(self) -> i32 {
                self as i32
            }

            /// The kind for an ABI code, if it is one.
            pub fn from_code(code: i32) -> Option<$name> {
                Self::ALL.iter().copied().find(|k| k.code() == code)
            }

            /// The `error` value, a short lowercase identifier, as a C string.
            pub fn kind_c(self) -> &'static std::ffi::CStr {
                match self { $($name::$variant => $kind,)+ }
            }

            /// The `message` value, a short lowercase description, as a C string.
            pub fn message_c(self) -> &'static std::ffi::CStr {
                match self { $($name::$variant => $message,)+ }
            }

            /// The `error` value.
            pub fn kind(self) -> &'static str {
                self.kind_c().to_str().unwrap_or("")
            }

            /// The `message` value.
            pub fn message(self) -> &'static str {
                self.message_c().to_str().unwrap_or("")
            }

            /// The number the server answers this kind with.
            pub fn $number(self) -> u16 {
                match self { $($name::$variant => $num,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.message())
            }
        }

        impl std::error::Error for $name {}
    };
}
pub(crate) use error_table;

include!(concat!(env!("OUT_DIR"), "/errors_http.rs"));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::WsError;

    /// Each generated enum: codes 1.., round trips, C strings equal to the strings,
    /// distinct lowercase kinds, numbers in range
    fn holds_together(rows: Vec<(i32, Option<i32>, &str, &str, &[u8], &[u8], String, u16)>, numbers: std::ops::RangeInclusive<u16>) {
        let mut kinds = Vec::new();
        for (i, (code, back, kind, message, kind_c, message_c, shown, number)) in rows.into_iter().enumerate() {
            assert_eq!(code, i as i32 + 1);
            assert_eq!(back, Some(code));
            assert!(kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{kind}");
            assert_eq!((kind_c, message_c), (kind.as_bytes(), message.as_bytes()));
            assert_eq!(shown, message);
            assert!(numbers.contains(&number), "{kind}: {number}");
            kinds.push(kind);
        }
        let n = kinds.len();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), n, "kinds are distinct");
    }

    #[test]
    fn the_tables_hold_together() {
        holds_together(
            ErrorKind::ALL.iter().map(|k| (k.code(), ErrorKind::from_code(k.code()).map(ErrorKind::code), k.kind(), k.message(),
                k.kind_c().to_bytes(), k.message_c().to_bytes(), k.to_string(), k.status())).collect(),
            400..=599,
        );
        holds_together(
            WsError::ALL.iter().map(|k| (k.code(), WsError::from_code(k.code()).map(WsError::code), k.kind(), k.message(),
                k.kind_c().to_bytes(), k.message_c().to_bytes(), k.to_string(), k.close_code())).collect(),
            1000..=4999,
        );
        use crate::h2::{H2Error, H2Refusal};
        holds_together(
            H2Error::ALL.iter().map(|k| (k.code(), H2Error::from_code(k.code()).map(H2Error::code), k.kind(), k.message(),
                k.kind_c().to_bytes(), k.message_c().to_bytes(), k.to_string(), k.error_code())).collect(),
            0..=13,
        );
        holds_together(
            H2Refusal::ALL.iter().map(|k| (k.code(), H2Refusal::from_code(k.code()).map(H2Refusal::code), k.kind(), k.message(),
                k.kind_c().to_bytes(), k.message_c().to_bytes(), k.to_string(), k.status())).collect(),
            400..=599,
        );
        use crate::response::AppErrorKind;
        holds_together(
            AppErrorKind::ALL.iter().map(|k| (k.code(), AppErrorKind::from_code(k.code()).map(AppErrorKind::code), k.kind(),
                k.message(), k.kind_c().to_bytes(), k.message_c().to_bytes(), k.to_string(), k.status())).collect(),
            500..=500,
        );
        // The codes the C header names for the app rows are their places in the table
        assert_eq!([AppErrorKind::BadStatus, AppErrorKind::BadName, AppErrorKind::BadValue, AppErrorKind::BadLength,
            AppErrorKind::ConflictingLength, AppErrorKind::StreamClosed, AppErrorKind::ResponseStarted,
            AppErrorKind::ResponseNotStarted, AppErrorKind::ResponseEnded, AppErrorKind::BadShape].map(AppErrorKind::code),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        // The first thirteen h2 kinds are the RFC 9113 error codes 1-13, in order
        for (i, k) in H2Error::ALL.iter().take(13).enumerate() {
            assert_eq!(usize::from(k.error_code()), i + 1, "{}", k.kind());
        }
        assert_eq!((ErrorKind::from_code(0), ErrorKind::from_code(13)), (None, None));
        assert_eq!((WsError::from_code(0), WsError::from_code(10)), (None, None));
        assert_eq!((ErrorKind::ALL.len(), WsError::ALL.len()), (12, 9));
        // A few rows of doc/codec.md's tables, through the generated enums
        let row = |k: ErrorKind| (k.kind(), k.status(), k.message());
        assert_eq!(row(ErrorKind::BadRequestLine), ("bad_request_line", 400, "invalid request line"));
        assert_eq!(row(ErrorKind::UriTooLong), ("uri_too_long", 414, "request line too long"));
        assert_eq!(row(ErrorKind::HeadersTooLarge), ("headers_too_large", 431, "request header fields too large"));
        assert_eq!(row(ErrorKind::UnsupportedVersion), ("unsupported_version", 505, "http version not supported"));
        let row = |k: WsError| (k.kind(), k.close_code(), k.message());
        assert_eq!(row(WsError::RsvBits), ("rsv_bits", 1002, "reserved bits set"));
        assert_eq!(row(WsError::TooLarge), ("too_large", 1009, "frame too large"));
    }
}
