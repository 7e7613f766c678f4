//! Generates the error enums (`ErrorKind`, `WsError`, `H2Error`, `H2Refusal`,
//! `AppErrorKind`) from THE error table, `lib/PAGI/Server/Protocol/errors.tsv`, which
//! the Perl side reads too: one row per kind (codec, kind, number, message); a kind's
//! ABI code is its place in its codec. And the reason phrases (`REASONS`) from their
//! table beside it, `reasons.tsv`.

use std::fmt::Write;

const TABLE: &str = "lib/PAGI/Server/Protocol/errors.tsv";
const REASONS: &str = "lib/PAGI/Server/Protocol/reasons.tsv";

fn main() {
    println!("cargo:rerun-if-changed={TABLE}");
    println!("cargo:rerun-if-changed={REASONS}");
    reasons();
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
        ("app", "AppErrorKind", "status"),
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

/// `REASONS`, the reason phrases' table (status, phrase), from `reasons.tsv`
fn reasons() {
    let text = std::fs::read_to_string(REASONS).unwrap_or_else(|e| panic!("{REASONS}: {e}"));
    let mut rs = String::from("/// `(status, reason)`, sorted by status (from the reasons table).\npub const REASONS: &[(u16, &str)] = &[\n");
    let mut last = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (status, phrase) = line.split_once('\t').unwrap_or_else(|| panic!("{REASONS}: {line:?}"));
        let status: u16 = status.parse().unwrap_or_else(|_| panic!("{REASONS}: status {status:?}"));
        assert!((100..=999).contains(&status) && status > last, "{REASONS}: {status} out of order");
        assert!(phrase.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'), "{REASONS}: {phrase:?}");
        last = status;
        writeln!(rs, "    ({status}, \"{phrase}\"),").unwrap();
    }
    rs.push_str("];\n");
    std::fs::write(format!("{}/reasons.rs", std::env::var("OUT_DIR").expect("OUT_DIR")), rs).unwrap();
}
