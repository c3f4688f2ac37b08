//! Presentation of records: every record type implements [`Describe`],
//! returning a [`Node`] tree that carries its presentation hints (address,
//! flag names, size, signal names), like the hints next to CRIU's image
//! schema fields. One renderer writes text ([`write_text`]), another JSON
//! ([`write_json`]); neither knows any record type.
//!
//! Invariants: rendering never fails except on output I/O; JSON output is
//! valid JSON (strings escaped per RFC 8259, numbers plain, hex values and
//! flags as strings).
use std::borrow::Cow;
use std::io::{self, Write};

/// A presentation tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// Absent value (`None`).
    Null,
    /// A boolean.
    Bool(bool),
    /// An unsigned number.
    U64(u64),
    /// A signed number.
    I64(i64),
    /// A string.
    Str(String),
    /// A number shown in hex with at least `digits` digits (addresses: 16).
    Hex { value: u64, digits: u8 },
    /// A byte count (text adds a KiB/MiB figure).
    Size(u64),
    /// A byte blob, shown as hex.
    Bytes(Vec<u8>),
    /// A flag set: names of the set flags plus bits without a name.
    Flags { names: Vec<Cow<'static, str>>, unknown: u64 },
    /// A sequence.
    Array(Vec<Node>),
    /// Named fields in order.
    Object(Vec<(Cow<'static, str>, Node)>),
}

/// Record types describe themselves for `crtools show`.
pub trait Describe {
    /// The presentation tree of `self`.
    fn describe(&self) -> Node;
}

impl Describe for () {
    fn describe(&self) -> Node {
        Node::Null
    }
}

impl<T: Describe> Describe for Vec<T> {
    fn describe(&self) -> Node {
        Node::Array(self.iter().map(Describe::describe).collect())
    }
}

impl<T: Describe> Describe for Option<T> {
    fn describe(&self) -> Node {
        match self {
            Some(v) => v.describe(),
            None => Node::Null,
        }
    }
}

macro_rules! node_from {
    ($($t:ty => $v:ident as $as:ty),*) => {$(
        impl From<$t> for Node { fn from(x: $t) -> Node { Node::$v(x as $as) } }
    )*};
}
node_from!(u8 => U64 as u64, u16 => U64 as u64, u32 => U64 as u64, u64 => U64 as u64,
           i32 => I64 as i64, i64 => I64 as i64);

impl From<bool> for Node {
    fn from(b: bool) -> Node {
        Node::Bool(b)
    }
}
impl From<&str> for Node {
    fn from(s: &str) -> Node {
        Node::Str(s.to_owned())
    }
}
impl From<String> for Node {
    fn from(s: String) -> Node {
        Node::Str(s)
    }
}
impl<T: Into<Node>> From<Option<T>> for Node {
    fn from(o: Option<T>) -> Node {
        o.map_or(Node::Null, Into::into)
    }
}

impl Node {
    /// An address, 0x%016x.
    pub fn addr(v: u64) -> Node {
        Node::Hex { value: v, digits: 16 }
    }
    /// A 32-bit hex value (checksums, masks), 0x%08x.
    pub fn hex32(v: u32) -> Node {
        Node::Hex { value: v as u64, digits: 8 }
    }
    /// A hex value with no padding.
    pub fn hex(v: u64) -> Node {
        Node::Hex { value: v, digits: 1 }
    }
    /// A `bitflags` set, by the names of its constants.
    pub fn flags<B>(f: B) -> Node
    where
        B: bitflags::Flags,
        B::Bits: Into<u64>,
    {
        let names = f.iter_names().map(|(n, _)| Cow::Borrowed(n)).collect();
        let unknown = f.bits().into() & !B::all().bits().into();
        Node::Flags { names, unknown }
    }
    /// A bit mask whose bit `i` is named `name(i)` (when `Some`).
    pub fn bitmask(bits: u64, name: impl Fn(u32) -> Option<Cow<'static, str>>) -> Node {
        let mut names = Vec::new();
        let mut unknown = 0;
        for i in 0..64 {
            if bits & (1u64 << i) != 0 {
                match name(i) {
                    Some(n) => names.push(n),
                    None => unknown |= 1u64 << i,
                }
            }
        }
        Node::Flags { names, unknown }
    }
    /// True for values that fit on one line.
    fn is_scalar(&self) -> bool {
        !matches!(self, Node::Array(_) | Node::Object(_))
    }
}

/// Builder for [`Node::Object`].
#[derive(Default)]
pub struct Obj(Vec<(Cow<'static, str>, Node)>);

impl Obj {
    /// An empty object.
    pub fn new() -> Self {
        Obj(Vec::new())
    }
    /// Adds a field.
    pub fn f(mut self, key: impl Into<Cow<'static, str>>, v: impl Into<Node>) -> Self {
        self.0.push((key.into(), v.into()));
        self
    }
    /// Adds a field holding a described value.
    pub fn d(self, key: impl Into<Cow<'static, str>>, v: &impl Describe) -> Self {
        self.f(key, v.describe())
    }
    /// Adds an address field.
    pub fn addr(self, key: impl Into<Cow<'static, str>>, v: u64) -> Self {
        self.f(key, Node::addr(v))
    }
    /// The object.
    pub fn done(self) -> Node {
        Node::Object(self.0)
    }
}

impl From<Obj> for Node {
    fn from(o: Obj) -> Node {
        o.done()
    }
}

const INLINE_MAX: usize = 110;

fn size_text(n: u64) -> String {
    const U: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n}");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{n} ({v:.1} {})", U[i])
}

fn flags_text(names: &[Cow<'static, str>], unknown: u64) -> String {
    let mut parts: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    if unknown != 0 {
        parts.push(format!("0x{unknown:x}"));
    }
    if parts.is_empty() {
        "0".to_owned()
    } else {
        parts.join("|")
    }
}

fn hex_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// One-line text of a scalar.
fn scalar_text(n: &Node) -> String {
    match n {
        Node::Null => "-".into(),
        Node::Bool(b) => b.to_string(),
        Node::U64(v) => v.to_string(),
        Node::I64(v) => v.to_string(),
        Node::Str(s) => {
            if s.is_empty() || s.chars().any(|c| c.is_control() || c == ',' || c == '}') {
                format!("{s:?}")
            } else {
                s.clone()
            }
        }
        Node::Hex { value, digits } => format!("0x{value:0w$x}", w = *digits as usize),
        Node::Size(v) => size_text(*v),
        Node::Bytes(b) if b.len() <= 32 => {
            if b.is_empty() {
                "<0 bytes>".into()
            } else {
                hex_bytes(b)
            }
        }
        Node::Bytes(b) => format!("<{} bytes> {}...", b.len(), hex_bytes(&b[..16])),
        Node::Flags { names, unknown } => flags_text(names, *unknown),
        Node::Array(_) | Node::Object(_) => inline_text(n).unwrap_or_default(),
    }
}

/// `{a: 1, b: 2}` / `[1, 2]` for flat containers, if short enough.
fn inline_text(n: &Node) -> Option<String> {
    let s = match n {
        Node::Array(items) => {
            if !items.iter().all(Node::is_scalar) {
                return None;
            }
            let v: Vec<String> = items.iter().map(scalar_text).collect();
            format!("[{}]", v.join(", "))
        }
        Node::Object(fields) => {
            if !fields.iter().all(|(_, v)| v.is_scalar()) {
                return None;
            }
            let v: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {}", scalar_text(v))).collect();
            format!("{{{}}}", v.join(", "))
        }
        _ => return Some(scalar_text(n)),
    };
    (s.len() <= INLINE_MAX).then_some(s)
}

/// Writes `node` as indented text; `indent` is the current depth.
/// Objects print `key: value` lines, nested containers go one level deeper,
/// short flat containers stay on one line.
pub fn write_text(out: &mut dyn Write, node: &Node, indent: usize) -> io::Result<()> {
    let pad = "  ".repeat(indent);
    match node {
        Node::Object(fields) => {
            for (k, v) in fields {
                match v {
                    Node::Object(_) | Node::Array(_) => match inline_text(v) {
                        Some(s) => writeln!(out, "{pad}{k}: {s}")?,
                        None => {
                            writeln!(out, "{pad}{k}:")?;
                            write_text(out, v, indent + 1)?;
                        }
                    },
                    _ => writeln!(out, "{pad}{k}: {}", scalar_text(v))?,
                }
            }
            Ok(())
        }
        Node::Array(items) => {
            if items.is_empty() {
                return writeln!(out, "{pad}[]");
            }
            for (i, v) in items.iter().enumerate() {
                match inline_text(v) {
                    Some(s) => writeln!(out, "{pad}[{i}] {s}")?,
                    None => {
                        writeln!(out, "{pad}[{i}]")?;
                        write_text(out, v, indent + 1)?;
                    }
                }
            }
            Ok(())
        }
        other => writeln!(out, "{pad}{}", scalar_text(other)),
    }
}

/// Writes `s` as a JSON string literal.
pub fn write_json_str(out: &mut dyn Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    let mut start = 0;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f | 0x7f => None,
            _ => continue,
        };
        out.write_all(&bytes[start..i])?;
        match esc {
            Some(e) => out.write_all(e)?,
            None => write!(out, "\\u{b:04x}")?,
        }
        start = i + 1;
    }
    out.write_all(&bytes[start..])?;
    out.write_all(b"\"")
}

/// Writes `node` as compact JSON.
pub fn write_json(out: &mut dyn Write, node: &Node) -> io::Result<()> {
    match node {
        Node::Null => out.write_all(b"null"),
        Node::Bool(b) => write!(out, "{b}"),
        Node::U64(v) | Node::Size(v) => write!(out, "{v}"),
        Node::I64(v) => write!(out, "{v}"),
        Node::Str(s) => write_json_str(out, s),
        Node::Hex { .. } => write_json_str(out, &scalar_text(node)),
        Node::Bytes(b) => write_json_str(out, &hex_bytes(b)),
        Node::Flags { names, unknown } => write_json_str(out, &flags_text(names, *unknown)),
        Node::Array(items) => {
            out.write_all(b"[")?;
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_json(out, v)?;
            }
            out.write_all(b"]")
        }
        Node::Object(fields) => {
            out.write_all(b"{")?;
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_json_str(out, k)?;
                out.write_all(b":")?;
                write_json(out, v)?;
            }
            out.write_all(b"}")
        }
    }
}

#[cfg(test)]
pub(crate) mod json_check {
    //! A tiny JSON parser for tests: accepts exactly RFC 8259 values.
    /// Parses `s` fully; returns an error description on failure.
    pub fn validate(s: &str) -> Result<(), String> {
        let b = s.as_bytes();
        let mut i = 0;
        value(b, &mut i, 0)?;
        ws(b, &mut i);
        if i != b.len() {
            return Err(format!("trailing data at {i}"));
        }
        Ok(())
    }
    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && matches!(b[*i], b' ' | b'\n' | b'\r' | b'\t') {
            *i += 1;
        }
    }
    fn expect(b: &[u8], i: &mut usize, c: u8) -> Result<(), String> {
        ws(b, i);
        if b.get(*i) == Some(&c) {
            *i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", c as char, *i))
        }
    }
    fn string(b: &[u8], i: &mut usize) -> Result<(), String> {
        expect(b, i, b'"')?;
        while *i < b.len() {
            match b[*i] {
                b'"' => {
                    *i += 1;
                    return Ok(());
                }
                b'\\' => {
                    *i += 1;
                    match b.get(*i) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *i += 1,
                        Some(b'u') => {
                            let h = b.get(*i + 1..*i + 5).ok_or("short \\u")?;
                            if !h.iter().all(u8::is_ascii_hexdigit) {
                                return Err("bad \\u".into());
                            }
                            *i += 5;
                        }
                        _ => return Err(format!("bad escape at {}", *i)),
                    }
                }
                0..=0x1f => return Err(format!("raw control char at {}", *i)),
                _ => *i += 1,
            }
        }
        Err("unterminated string".into())
    }
    fn value(b: &[u8], i: &mut usize, depth: usize) -> Result<(), String> {
        if depth > 64 {
            return Err("too deep".into());
        }
        ws(b, i);
        match b.get(*i) {
            Some(b'{') => {
                *i += 1;
                ws(b, i);
                if b.get(*i) == Some(&b'}') {
                    *i += 1;
                    return Ok(());
                }
                loop {
                    ws(b, i);
                    string(b, i)?;
                    expect(b, i, b':')?;
                    value(b, i, depth + 1)?;
                    ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            return Ok(());
                        }
                        _ => return Err(format!("expected ',' or '}}' at {}", *i)),
                    }
                }
            }
            Some(b'[') => {
                *i += 1;
                ws(b, i);
                if b.get(*i) == Some(&b']') {
                    *i += 1;
                    return Ok(());
                }
                loop {
                    value(b, i, depth + 1)?;
                    ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b']') => {
                            *i += 1;
                            return Ok(());
                        }
                        _ => return Err(format!("expected ',' or ']' at {}", *i)),
                    }
                }
            }
            Some(b'"') => string(b, i),
            Some(b't') if b[*i..].starts_with(b"true") => {
                *i += 4;
                Ok(())
            }
            Some(b'f') if b[*i..].starts_with(b"false") => {
                *i += 5;
                Ok(())
            }
            Some(b'n') if b[*i..].starts_with(b"null") => {
                *i += 4;
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => {
                let st = *i;
                if b[*i] == b'-' {
                    *i += 1;
                }
                let ds = *i;
                while *i < b.len() && b[*i].is_ascii_digit() {
                    *i += 1;
                }
                if *i == ds || (b[ds] == b'0' && *i - ds > 1) {
                    return Err(format!("bad number at {st}"));
                }
                Ok(())
            }
            _ => Err(format!("unexpected input at {}", *i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    bitflags::bitflags! {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        struct T: u32 { const A_ONE = 1; const B_TWO = 2; }
    }

    #[test]
    fn text_and_json() {
        let n = Obj::new()
            .f("name", "a \"q\"\n\u{1}")
            .addr("start", 0x7f00_0000_1000)
            .f("flags", Node::flags(T::from_bits_retain(0x13)))
            .f("none", Node::flags(T::empty()))
            .f("list", Node::Array(vec![1u32.into(), Node::Null]))
            .f(
                "nested",
                Obj::new().f("x", -3i32).f("big", Node::Array(vec![Obj::new().f("k", Node::Array(vec![])).done()])),
            )
            .f("size", Node::Size(8192))
            .done();
        let mut t = Vec::new();
        write_text(&mut t, &n, 0).unwrap();
        let t = String::from_utf8(t).unwrap();
        assert!(t.contains("start: 0x00007f0000001000"), "{t}");
        assert!(t.contains("flags: A_ONE|B_TWO|0x10"), "{t}");
        assert!(t.contains("none: 0"), "{t}");
        assert!(t.contains("size: 8192 (8.0 KiB)"), "{t}");
        let mut j = Vec::new();
        write_json(&mut j, &n).unwrap();
        let j = String::from_utf8(j).unwrap();
        json_check::validate(&j).unwrap();
        assert!(
            j.starts_with(r#"{"name":"a \"q\"\n\u0001","start":"0x00007f0000001000","flags":"A_ONE|B_TWO|0x10""#),
            "{j}"
        );
        assert!(json_check::validate("{\"a\":[1,2,}").is_err());
        assert!(json_check::validate("{\"a\":1}}").is_err());
    }
}
