//! Generates the error enums (`ErrorKind`, `WsError`, `H2Error`, `H2Refusal`) from THE
//! error table, `lib/PAGI/Server/Protocol/errors.tsv`, which the Perl side reads too:
//! one row per kind (codec, kind, number, message); a kind's ABI code is its place in
//! its codec.

use std::fmt::Write;

const TABLE: &str = "lib/PAGI/Server/Protocol/errors.tsv";

fn main() {
    println!("cargo:rerun-if-changed={TABLE}");
    let text = std::fs::read_to_string(TABLE).unwrap_or_else(|e| panic!("{TABLE}: {e}"));
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    for (codec, name, number) in [
        ("http", "ErrorKind", "status"),
        ("ws", "WsError", "close_code"),
        ("h2", "H2Error", "error_code"),
        ("h2req", "H2Refusal", "status"),
    ] {
        let mut rs = format!(
            "crate::error::error_table! {{\n    /// The `{codec}` rows of `{TABLE}`; `{number}` is the number the server answers with.\n    pub enum {name}, fn {number} {{\n"
        );
        let mut code = 0;
        for row in rows.iter().filter(|r| r[0] == codec) {
            let [_, kind, num, message] = row[..] else { panic!("{TABLE}: not 4 columns: {row:?}") };
            assert!(
                kind.starts_with(|c: char| c.is_ascii_lowercase())
                    && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{TABLE}: kind {kind:?}"
            );
            assert!(message.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'), "{TABLE}: {message:?}");
            let num: u16 = num.parse().unwrap_or_else(|_| panic!("{TABLE}: number {num:?}"));
            let variant: String = kind.split('_').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect();
            code += 1;
            writeln!(rs, "        {variant} = {code}, c\"{kind}\", c\"{message}\", {num};").unwrap();
        }
        assert!(code > 0, "{TABLE}: no {codec} rows");
        rs.push_str("    }\n}\n");
        std::fs::write(format!("{out}/errors_{codec}.rs"), rs).unwrap();
    }
}
