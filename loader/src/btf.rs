//! A minimal, read-only reader of BTF type information.
//!
//! aya-obj keeps its type accessors private, and weir needs exactly one thing from BTF that it
//! cannot get elsewhere: the *member layout* of a map's key and value types, to check them against
//! `maps-schema` (both in an object before load and in a pinned map before reuse). This reader
//! parses the header, the type section and the string section and nothing more. It never panics on
//! malformed input: every read is bounds-checked, because it also reads BTF that came from disk.

use std::fmt;

const BTF_MAGIC: u16 = 0xeb9f;

/// BTF kinds (the `kind` bits of `btf_type.info`), as numbered by the kernel uapi.
mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// Why a BTF blob could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfError(String);

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed BTF: {}", self.0)
    }
}

impl std::error::Error for BtfError {}

fn err<T>(msg: impl Into<String>) -> Result<T, BtfError> {
    Err(BtfError(msg.into()))
}

/// One member of a struct or union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member name ("" for anonymous members).
    pub name: String,
    /// Offset from the start of the aggregate, in bits.
    pub bit_offset: u32,
    /// Bitfield size in bits, 0 when the member is not a bitfield.
    pub bitfield_size: u32,
    /// Type id of the member.
    pub type_id: u32,
}

/// A parsed BTF type, reduced to what layout checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// An integer of `size` bytes.
    Int { name: String, size: u32 },
    /// A pointer (8 bytes on the BPF target).
    Ptr,
    /// An array of `nelems` elements of `elem_type`.
    Array { elem_type: u32, nelems: u32 },
    /// A struct or union with its members.
    Struct {
        name: String,
        size: u32,
        members: Vec<Member>,
        is_union: bool,
    },
    /// An enum of `size` bytes.
    Enum { name: String, size: u32 },
    /// A typedef, const, volatile, restrict or type tag: transparent for layout.
    Alias { name: String, target: u32 },
    /// A float of `size` bytes.
    Float { name: String, size: u32 },
    /// Anything else (functions, variables, data sections, forward declarations, tags).
    Other,
}

/// The types and strings of one BTF blob. Type id 0 is `void`; ids start at 1.
#[derive(Debug, Clone)]
pub struct Btf {
    types: Vec<Type>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, BtfError> {
        let end = self.pos.checked_add(4).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return err(format!("type section truncated at byte {}", self.pos));
        };
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(u32::from_le_bytes(b))
    }

    fn skip(&mut self, n: usize) -> Result<(), BtfError> {
        match self.pos.checked_add(n).filter(|&e| e <= self.data.len()) {
            Some(end) => {
                self.pos = end;
                Ok(())
            }
            None => err(format!("type section truncated at byte {}", self.pos)),
        }
    }
}

fn le_u32(data: &[u8], at: usize) -> Result<u32, BtfError> {
    let bytes = at
        .checked_add(4)
        .and_then(|end| data.get(at..end))
        .ok_or_else(|| BtfError(format!("header truncated at byte {at}")))?;
    let mut b = [0u8; 4];
    b.copy_from_slice(bytes);
    Ok(u32::from_le_bytes(b))
}

impl Btf {
    /// Parses a little-endian BTF blob (the `.BTF` section, or what the kernel returns for a
    /// BTF object id).
    ///
    /// # Errors
    /// Returns [`BtfError`] when the magic, header or any type record is malformed or truncated.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 {
            return err(format!(
                "{} bytes is shorter than the 24-byte header",
                data.len()
            ));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != BTF_MAGIC {
            return err(format!(
                "bad magic {magic:#06x} (expected {BTF_MAGIC:#06x})"
            ));
        }
        let hdr_len = le_u32(data, 4)? as usize;
        let type_off = le_u32(data, 8)? as usize;
        let type_len = le_u32(data, 12)? as usize;
        let str_off = le_u32(data, 16)? as usize;
        let str_len = le_u32(data, 20)? as usize;
        let section = |off: usize, len: usize, what: &str| {
            hdr_len
                .checked_add(off)
                .and_then(|start| Some((start, start.checked_add(len)?)))
                .and_then(|(start, end)| data.get(start..end))
                .ok_or_else(|| BtfError(format!("{what} section lies outside the blob")))
        };
        let type_data = section(type_off, type_len, "type")?;
        let strings = section(str_off, str_len, "string")?;
        let string_at = |off: u32| -> Result<String, BtfError> {
            let tail = strings
                .get(off as usize..)
                .ok_or_else(|| BtfError(format!("string offset {off} out of range")))?;
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
        };

        let mut types = vec![Type::Other]; // id 0: void
        let mut r = Reader {
            data: type_data,
            pos: 0,
        };
        while r.pos < type_data.len() {
            let name_off = r.u32()?;
            let info = r.u32()?;
            let size_or_type = r.u32()?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let ty = match kind {
                kind::INT => {
                    r.skip(4)?;
                    Type::Int {
                        name: string_at(name_off)?,
                        size: size_or_type,
                    }
                }
                kind::PTR => Type::Ptr,
                kind::ARRAY => {
                    let elem_type = r.u32()?;
                    let _index_type = r.u32()?;
                    let nelems = r.u32()?;
                    Type::Array { elem_type, nelems }
                }
                kind::STRUCT | kind::UNION => {
                    let mut members = Vec::with_capacity(vlen.min(1024));
                    for _ in 0..vlen {
                        let m_name = r.u32()?;
                        let type_id = r.u32()?;
                        let offset = r.u32()?;
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (offset & 0x00ff_ffff, offset >> 24)
                        } else {
                            (offset, 0)
                        };
                        members.push(Member {
                            name: string_at(m_name)?,
                            bit_offset,
                            bitfield_size,
                            type_id,
                        });
                    }
                    Type::Struct {
                        name: string_at(name_off)?,
                        size: size_or_type,
                        members,
                        is_union: kind == kind::UNION,
                    }
                }
                kind::ENUM => {
                    r.skip(
                        vlen.checked_mul(8)
                            .ok_or_else(|| BtfError("enum too long".into()))?,
                    )?;
                    Type::Enum {
                        name: string_at(name_off)?,
                        size: size_or_type,
                    }
                }
                kind::ENUM64 => {
                    r.skip(
                        vlen.checked_mul(12)
                            .ok_or_else(|| BtfError("enum64 too long".into()))?,
                    )?;
                    Type::Enum {
                        name: string_at(name_off)?,
                        size: size_or_type,
                    }
                }
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    Type::Alias {
                        name: string_at(name_off)?,
                        target: size_or_type,
                    }
                }
                kind::FLOAT => Type::Float {
                    name: string_at(name_off)?,
                    size: size_or_type,
                },
                kind::FWD | kind::FUNC => Type::Other,
                kind::FUNC_PROTO => {
                    r.skip(
                        vlen.checked_mul(8)
                            .ok_or_else(|| BtfError("prototype too long".into()))?,
                    )?;
                    Type::Other
                }
                kind::VAR | kind::DECL_TAG => {
                    r.skip(4)?;
                    Type::Other
                }
                kind::DATASEC => {
                    r.skip(
                        vlen.checked_mul(12)
                            .ok_or_else(|| BtfError("datasec too long".into()))?,
                    )?;
                    Type::Other
                }
                other => {
                    return err(format!(
                        "unknown type kind {other} for type id {}",
                        types.len()
                    ))
                }
            };
            types.push(ty);
        }
        Ok(Self { types })
    }

    /// Returns the type with id `id`.
    ///
    /// # Errors
    /// Returns [`BtfError`] when `id` is not a type of this blob.
    pub fn get(&self, id: u32) -> Result<&Type, BtfError> {
        self.types.get(id as usize).ok_or_else(|| {
            BtfError(format!(
                "type id {id} does not exist ({} types)",
                self.types.len()
            ))
        })
    }

    /// Follows typedefs and qualifiers from `id` to the type that defines the layout.
    ///
    /// # Errors
    /// Returns [`BtfError`] on a dangling id or an alias cycle.
    pub fn resolve(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..32 {
            match self.get(id)? {
                Type::Alias { target, .. } => id = *target,
                _ => return Ok(id),
            }
        }
        err(format!("type id {id}: typedef chain longer than 32"))
    }

    /// The size in bytes of type `id`.
    ///
    /// # Errors
    /// Returns [`BtfError`] on a dangling id, a type without a size, or an overflow.
    pub fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        self.size_of_depth(id, 0)
    }

    fn size_of_depth(&self, id: u32, depth: u32) -> Result<u32, BtfError> {
        if depth > 32 {
            return err(format!("type id {id}: nesting deeper than 32"));
        }
        let id = self.resolve(id)?;
        match self.get(id)? {
            Type::Int { size, .. } | Type::Enum { size, .. } | Type::Float { size, .. } => {
                Ok(*size)
            }
            Type::Struct { size, .. } => Ok(*size),
            Type::Ptr => Ok(8),
            Type::Array { elem_type, nelems } => self
                .size_of_depth(*elem_type, depth + 1)?
                .checked_mul(*nelems)
                .ok_or_else(|| BtfError(format!("type id {id}: array size overflows"))),
            Type::Alias { .. } | Type::Other => err(format!("type id {id} has no size")),
        }
    }

    /// Number of types, `void` included.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// True when the blob holds no type but `void`.
    pub fn is_empty(&self) -> bool {
        self.types.len() <= 1
    }
}

/// The layout of one type as weir compares it: its C name, size and (for structs) members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeLayout {
    /// The C spelling: `struct NAME` for structs, the typedef or base name otherwise.
    pub c_name: String,
    /// Size in bytes.
    pub size: u32,
    /// For structs: (member name, byte offset, byte size).
    pub members: Vec<(String, u32, u32)>,
}

impl Btf {
    /// Describes the layout of type `id` for comparison against the schema.
    ///
    /// The C name is the first named type in the typedef chain (so `__u32` stays `__u32`),
    /// and struct members are listed with byte offsets and sizes.
    ///
    /// # Errors
    /// Returns [`BtfError`] on dangling ids, bitfields or members that are not byte aligned.
    pub fn layout(&self, id: u32) -> Result<TypeLayout, BtfError> {
        let resolved = self.resolve(id)?;
        let c_name = match (self.get(id)?, self.get(resolved)?) {
            (Type::Alias { name, .. }, _) if !name.is_empty() => name.clone(),
            (_, Type::Struct { name, is_union, .. }) => {
                format!("{} {name}", if *is_union { "union" } else { "struct" })
            }
            (_, Type::Int { name, .. })
            | (_, Type::Enum { name, .. })
            | (_, Type::Float { name, .. }) => name.clone(),
            _ => String::new(),
        };
        let size = self.size_of(resolved)?;
        let mut members = Vec::new();
        if let Type::Struct { members: ms, .. } = self.get(resolved)? {
            for m in ms {
                if m.bitfield_size != 0 || m.bit_offset % 8 != 0 {
                    return err(format!(
                        "member '{}' is a bitfield; map layouts must be byte aligned",
                        m.name
                    ));
                }
                members.push((m.name.clone(), m.bit_offset / 8, self.size_of(m.type_id)?));
            }
        }
        Ok(TypeLayout {
            c_name,
            size,
            members,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a BTF blob from raw type records and a string table, for tests.
    pub(crate) fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let type_len = (types.len() * 4) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.push(1);
        out.push(0);
        for v in [24u32, 0, type_len, type_len, strings.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for t in types {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.extend_from_slice(strings);
        out
    }

    fn info(kind: u32, vlen: u32) -> u32 {
        (kind << 24) | vlen
    }

    /// strings: 0 "", 1 "unsigned int", 14 "__u32", 20 "weir_if_key", 32 "ifindex", 40 "hook"
    pub(crate) fn sample() -> Vec<u8> {
        let strings = b"\0unsigned int\0__u32\0weir_if_key\0ifindex\0hook\0";
        #[rustfmt::skip]
        let types = [
            1, info(kind::INT, 0), 4, 32,            // id 1: unsigned int
            14, info(kind::TYPEDEF, 0), 1,           // id 2: __u32 -> 1
            20, info(kind::STRUCT, 2), 8,            // id 3: struct weir_if_key
                32, 2, 0,
                40, 2, 32,
            0, info(kind::CONST, 0), 3,              // id 4: const struct weir_if_key
        ];
        blob(&types, strings)
    }

    #[test]
    fn reads_struct_layout_through_qualifiers() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.len(), 5);
        let l = btf.layout(4).unwrap();
        assert_eq!(l.c_name, "struct weir_if_key");
        assert_eq!(l.size, 8);
        assert_eq!(
            l.members,
            vec![("ifindex".into(), 0, 4), ("hook".into(), 4, 4)]
        );
        let s = btf.layout(2).unwrap();
        assert_eq!((s.c_name.as_str(), s.size), ("__u32", 4));
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error_not_a_panic() {
        let full = sample();
        for cut in 0..full.len() {
            let _ = Btf::parse(&full[..cut]);
        }
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut b = full.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (seed as usize >> 8) % b.len();
                b[i] = (seed >> 3) as u8;
            }
            if let Ok(btf) = Btf::parse(&b) {
                for id in 0..8 {
                    let _ = btf.layout(id);
                }
            }
        }
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0u8; 24])
            .unwrap_err()
            .to_string()
            .contains("bad magic"));
    }

    #[test]
    fn alias_cycles_are_reported() {
        let strings = b"\0a\0";
        let types = [1, info(kind::TYPEDEF, 0), 2, 1, info(kind::TYPEDEF, 0), 1];
        let btf = Btf::parse(&blob(&types, strings)).unwrap();
        assert!(btf
            .resolve(1)
            .unwrap_err()
            .to_string()
            .contains("longer than 32"));
    }
}
