//! Content version of a Blueprint (spec `blueprint.md` §6, project decision 2).
//!
//! # Definition
//!
//! ```text
//! version(bp)         = BLAKE3-256(canonical_bytes(bp))
//! canonical_bytes(bp) = compact JSON (UTF-8, no whitespace) of the typed Blueprint
//!                       after defaults are applied, where
//!                         * struct fields appear in declaration order (the order of
//!                           the spec tables; flow nodes/expressions as `mse-flow`
//!                           serializes them: tag first, then their fields),
//!                         * every map — JSON objects inside free-form values
//!                           (`spec`, `global`, `extras`, `lit` values, …) and
//!                           `hints.per_agent` — has its entries sorted by key in
//!                           ascending byte order,
//!                         * every `Option` is written (`null` when unset) except the
//!                           four the spec omits when null: `default_operator_kind`,
//!                           `metadata.version_label`, `metadata.project_name_alias`,
//!                           `metadata.default_run_ttl_secs`,
//!                         * strings, numbers and literals are written exactly as
//!                           `serde_json` writes them (integers without a fraction,
//!                           floats in shortest round-trip form keeping a fraction:
//!                           `1` and `1.0` differ).
//! ```
//!
//! Example: `{"id":"hello","flow":{"kind":"seq","children":[]}}` has the canonical
//! bytes
//!
//! ```text
//! {"schema_version":"0.1.0","id":"hello","flow":{"kind":"seq","children":[]},"agents":[],
//! "operators":[],"hints":{"per_agent":{},"global":null},"strategy":{"strict_refs":true,
//! "strict_kind":true},"metadata":{"description":null,"origin":{"kind":"inline"},"tags":[]},
//! "spawner_hints":{"layers":[]},"default_agent_kind":"operator"}
//! ```
//!
//! (one line, no line breaks; pinned by `tests/schema_version.rs`).
//!
//! The text form of a version is 64 lowercase hex digits; [`BlueprintVersion`]
//! serializes as that string and parses hex in either case.
//!
//! The map ordering is enforced by this module's own serializer, so it holds whether
//! or not `serde_json`'s `preserve_order` feature is enabled anywhere in the build.
//! With default `serde_json` features the bytes are identical to
//! `serde_json::to_vec(&blueprint)`. (Should `arbitrary_precision` ever be enabled,
//! numbers would be hashed as written in the input, so `1.0` and `1.00` would
//! differ; it is not enabled today.)
//!
//! Consequences: two bodies that differ only in key order, whitespace, or
//! explicitly-written defaults (including `null` for optional fields) have the same
//! version; any change of content (a literal, a description, `1` vs `1.0`) changes it.
//!
//! **Documented deviation**: the reference hashes a `serde_yaml` rendering of the
//! Blueprint and emits `hints.per_agent` in random hash-map order (so its versions are
//! not stable across parses, §14 #1). Our versions are therefore *not* equal to the
//! reference's (the §6 test vectors do not apply); they are stable across parses,
//! processes and map orderings, which is what decision 2 requires.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::schema::Blueprint;

/// BLAKE3-256 content hash of a Blueprint's canonical bytes (see module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlueprintVersion([u8; 32]);

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid blueprint version {input:?}: expected 64 hex digits")]
pub struct VersionParseError {
    /// The rejected input (truncated to 100 characters).
    pub input: String,
}

impl BlueprintVersion {
    /// The content version of `bp`.
    pub fn of(bp: &Blueprint) -> BlueprintVersion {
        BlueprintVersion(*blake3::hash(&canonical_bytes(bp)).as_bytes())
    }

    /// The canonical bytes hashed by [`BlueprintVersion::of`] (same as
    /// [`canonical_bytes`]).
    pub fn canonical_bytes(bp: &Blueprint) -> Vec<u8> {
        canonical_bytes(bp)
    }

    /// Wrap raw hash bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> BlueprintVersion {
        BlueprintVersion(bytes)
    }

    /// The raw hash bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for BlueprintVersion {
    type Err = VersionParseError;

    /// Exactly 64 hex digits, upper or lower case; nothing else (no prefix, no
    /// whitespace).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionParseError {
            input: s.chars().take(100).collect(),
        };
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| err())?;
        Ok(BlueprintVersion(out))
    }
}

impl fmt::Display for BlueprintVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlueprintVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlueprintVersion({})", self.to_hex())
    }
}

impl Serialize for BlueprintVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for BlueprintVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BlueprintVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a blueprint version (64 hex digits)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BlueprintVersion, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl schemars::JsonSchema for BlueprintVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BlueprintVersion".into()
    }

    fn json_schema(_gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Blueprint content version: BLAKE3-256 of the canonical JSON, 64 hex digits.",
            "pattern": "^[0-9a-fA-F]{64}$"
        })
    }
}

impl Blueprint {
    /// The content version of this Blueprint ([`BlueprintVersion::of`]).
    pub fn version(&self) -> BlueprintVersion {
        BlueprintVersion::of(self)
    }
}

/// The canonical serialization hashed into the content version (see module docs).
pub fn canonical_bytes(bp: &Blueprint) -> Vec<u8> {
    canonical::to_vec(bp)
        .expect("a Blueprint always serializes to canonical JSON")
        .into_bytes()
}

/// BLAKE3-256 of `bytes` as 64 lowercase hex digits (used e.g. for
/// `AgentProfile.version_hash` of an agent.md body).
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// A serde serializer that writes compact JSON exactly like `serde_json`, except that
/// the entries of every map (as opposed to struct) are sorted by key bytes.
mod canonical {
    use serde::ser::{self, Serialize};

    const NUMBER_TOKEN: &str = "$serde_json::private::Number";
    const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

    #[derive(Debug)]
    pub struct Error(String);

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    impl ser::Error for Error {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Error(msg.to_string())
        }
    }

    pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
        value.serialize(Canon)
    }

    /// A scalar written by serde_json itself (identical formatting).
    fn json<T: Serialize + ?Sized>(v: &T) -> Result<String, Error> {
        serde_json::to_string(v).map_err(|e| Error(e.to_string()))
    }

    fn object(entries: &[(String, String)]) -> Result<String, Error> {
        let mut out = String::from("{");
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json(k)?);
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        Ok(out)
    }

    fn array(items: &[String]) -> String {
        let mut out = String::from("[");
        out.push_str(&items.join(","));
        out.push(']');
        out
    }

    struct Canon;

    impl ser::Serializer for Canon {
        type Ok = String;
        type Error = Error;
        type SerializeSeq = Seq;
        type SerializeTuple = Seq;
        type SerializeTupleStruct = Seq;
        type SerializeTupleVariant = Variant<Seq>;
        type SerializeMap = Map;
        type SerializeStruct = Struct;
        type SerializeStructVariant = Variant<Struct>;

        fn serialize_bool(self, v: bool) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_i8(self, v: i8) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_i16(self, v: i16) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_i32(self, v: i32) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_i64(self, v: i64) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_i128(self, v: i128) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_u8(self, v: u8) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_u16(self, v: u16) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_u32(self, v: u32) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_u64(self, v: u64) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_u128(self, v: u128) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_f32(self, v: f32) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_f64(self, v: f64) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_char(self, v: char) -> Result<String, Error> {
            json(&v)
        }
        fn serialize_str(self, v: &str) -> Result<String, Error> {
            json(v)
        }
        fn serialize_bytes(self, v: &[u8]) -> Result<String, Error> {
            json(v)
        }
        fn serialize_none(self) -> Result<String, Error> {
            Ok("null".to_owned())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<String, Error> {
            v.serialize(self)
        }
        fn serialize_unit(self) -> Result<String, Error> {
            Ok("null".to_owned())
        }
        fn serialize_unit_struct(self, _name: &'static str) -> Result<String, Error> {
            Ok("null".to_owned())
        }
        fn serialize_unit_variant(
            self,
            _name: &'static str,
            _index: u32,
            variant: &'static str,
        ) -> Result<String, Error> {
            json(variant)
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _name: &'static str,
            v: &T,
        ) -> Result<String, Error> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _name: &'static str,
            _index: u32,
            variant: &'static str,
            v: &T,
        ) -> Result<String, Error> {
            object(&[(variant.to_owned(), v.serialize(Canon)?)])
        }
        fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Error> {
            Ok(Seq(Vec::with_capacity(len.unwrap_or(0))))
        }
        fn serialize_tuple(self, len: usize) -> Result<Seq, Error> {
            Ok(Seq(Vec::with_capacity(len)))
        }
        fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq, Error> {
            Ok(Seq(Vec::with_capacity(len)))
        }
        fn serialize_tuple_variant(
            self,
            _name: &'static str,
            _index: u32,
            variant: &'static str,
            len: usize,
        ) -> Result<Variant<Seq>, Error> {
            Ok(Variant {
                variant,
                inner: Seq(Vec::with_capacity(len)),
            })
        }
        fn serialize_map(self, len: Option<usize>) -> Result<Map, Error> {
            Ok(Map {
                entries: Vec::with_capacity(len.unwrap_or(0)),
                key: None,
            })
        }
        fn serialize_struct(self, name: &'static str, len: usize) -> Result<Struct, Error> {
            let raw = match name {
                NUMBER_TOKEN => Some(Raw::Number),
                RAW_VALUE_TOKEN => Some(Raw::Json),
                _ => None,
            };
            Ok(Struct {
                raw,
                fields: Vec::with_capacity(len),
            })
        }
        fn serialize_struct_variant(
            self,
            _name: &'static str,
            _index: u32,
            variant: &'static str,
            len: usize,
        ) -> Result<Variant<Struct>, Error> {
            Ok(Variant {
                variant,
                inner: Struct {
                    raw: None,
                    fields: Vec::with_capacity(len),
                },
            })
        }
    }

    pub struct Seq(Vec<String>);

    impl ser::SerializeSeq for Seq {
        type Ok = String;
        type Error = Error;
        fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
            self.0.push(v.serialize(Canon)?);
            Ok(())
        }
        fn end(self) -> Result<String, Error> {
            Ok(array(&self.0))
        }
    }

    impl ser::SerializeTuple for Seq {
        type Ok = String;
        type Error = Error;
        fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
            ser::SerializeSeq::serialize_element(self, v)
        }
        fn end(self) -> Result<String, Error> {
            ser::SerializeSeq::end(self)
        }
    }

    impl ser::SerializeTupleStruct for Seq {
        type Ok = String;
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
            ser::SerializeSeq::serialize_element(self, v)
        }
        fn end(self) -> Result<String, Error> {
            ser::SerializeSeq::end(self)
        }
    }

    pub struct Map {
        entries: Vec<(String, String)>,
        key: Option<String>,
    }

    /// Map keys as serde_json accepts them: strings, or scalars written as strings.
    fn map_key<T: Serialize + ?Sized>(key: &T) -> Result<String, Error> {
        match serde_json::to_value(key).map_err(|e| Error(e.to_string()))? {
            serde_json::Value::String(s) => Ok(s),
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => Ok(v.to_string()),
            _ => Err(Error("map key must be a string".to_owned())),
        }
    }

    impl ser::SerializeMap for Map {
        type Ok = String;
        type Error = Error;
        fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
            self.key = Some(map_key(key)?);
            Ok(())
        }
        fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
            let key = self
                .key
                .take()
                .ok_or_else(|| Error("map value without key".to_owned()))?;
            self.entries.push((key, v.serialize(Canon)?));
            Ok(())
        }
        fn end(mut self) -> Result<String, Error> {
            self.entries
                .sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            object(&self.entries)
        }
    }

    /// serde_json's private carriers (only with its `arbitrary_precision` /
    /// `raw_value` features): a one-field struct whose field holds JSON text.
    #[derive(Clone, Copy)]
    enum Raw {
        /// Number digits, written verbatim.
        Number,
        /// Arbitrary JSON text, re-parsed and written canonically.
        Json,
    }

    pub struct Struct {
        raw: Option<Raw>,
        fields: Vec<(String, String)>,
    }

    impl ser::SerializeStruct for Struct {
        type Ok = String;
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            key: &'static str,
            v: &T,
        ) -> Result<(), Error> {
            let text = match self.raw {
                None => v.serialize(Canon)?,
                Some(kind) => {
                    let text = serde_json::to_value(v)
                        .map_err(|e| Error(e.to_string()))?
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| Error("raw JSON carrier without text".to_owned()))?;
                    match kind {
                        Raw::Number => text,
                        // Re-parse so raw JSON gets sorted keys and no whitespace.
                        Raw::Json => serde_json::from_str::<serde_json::Value>(&text)
                            .map_err(|e| Error(e.to_string()))?
                            .serialize(Canon)?,
                    }
                }
            };
            self.fields.push((key.to_owned(), text));
            Ok(())
        }
        fn skip_field(&mut self, _key: &'static str) -> Result<(), Error> {
            Ok(())
        }
        fn end(self) -> Result<String, Error> {
            if self.raw.is_some() {
                return self
                    .fields
                    .into_iter()
                    .next()
                    .map(|(_, text)| text)
                    .ok_or_else(|| Error("raw JSON carrier without text".to_owned()));
            }
            object(&self.fields)
        }
    }

    pub struct Variant<I> {
        variant: &'static str,
        inner: I,
    }

    impl ser::SerializeTupleVariant for Variant<Seq> {
        type Ok = String;
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
            ser::SerializeSeq::serialize_element(&mut self.inner, v)
        }
        fn end(self) -> Result<String, Error> {
            let inner = ser::SerializeSeq::end(self.inner)?;
            object(&[(self.variant.to_owned(), inner)])
        }
    }

    impl ser::SerializeStructVariant for Variant<Struct> {
        type Ok = String;
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            key: &'static str,
            v: &T,
        ) -> Result<(), Error> {
            ser::SerializeStruct::serialize_field(&mut self.inner, key, v)
        }
        fn end(self) -> Result<String, Error> {
            let inner = ser::SerializeStruct::end(self.inner)?;
            object(&[(self.variant.to_owned(), inner)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;
    use serde_json::json;
    use std::collections::HashMap;

    #[test]
    fn maps_sorted_structs_in_order() {
        #[derive(serde::Serialize)]
        struct S {
            z: u8,
            a: HashMap<String, f64>,
            m: Option<u8>,
        }
        let mut a = HashMap::new();
        for k in ["b", "a", "é", "B", "aa"] {
            a.insert(k.to_owned(), 1.0);
        }
        let s = S { z: 1, a, m: None };
        assert_eq!(
            canonical::to_vec(&s).unwrap(),
            r#"{"z":1,"a":{"B":1.0,"a":1.0,"aa":1.0,"b":1.0,"é":1.0},"m":null}"#
        );
    }

    #[test]
    fn values_match_serde_json_formatting() {
        let v = json!({"s": "q\"\n\u{1}é", "i": -3, "u": 18446744073709551615u64,
                       "f": 1e21, "g": 0.1, "n": null, "t": [true, false, []], "o": {}});
        let expected = serde_json::to_string(&v).unwrap();
        let got = canonical::to_vec(&v).unwrap();
        // serde_json's default Map is ordered by key, so the texts coincide unless
        // `preserve_order` is on; compare key-order independently.
        let reparsed: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(reparsed, v);
        assert_eq!(got.len(), expected.len());
        assert_eq!(
            got,
            r#"{"f":1e+21,"g":0.1,"i":-3,"n":null,"o":{},"s":"q\"\n\u0001é","t":[true,false,[]],"u":18446744073709551615}"#
        );
    }

    #[test]
    fn enum_shapes() {
        #[derive(serde::Serialize)]
        enum E {
            U,
            N(u8),
            T(u8, u8),
            S { b: u8, a: u8 },
        }
        assert_eq!(canonical::to_vec(&E::U).unwrap(), r#""U""#);
        assert_eq!(canonical::to_vec(&E::N(1)).unwrap(), r#"{"N":1}"#);
        assert_eq!(canonical::to_vec(&E::T(1, 2)).unwrap(), r#"{"T":[1,2]}"#);
        assert_eq!(
            canonical::to_vec(&E::S { b: 1, a: 2 }).unwrap(),
            r#"{"S":{"b":1,"a":2}}"#
        );
        assert_eq!(
            canonical::to_vec(&E::S { b: 1, a: 2 }).unwrap(),
            serde_json::to_string(&E::S { b: 1, a: 2 }).unwrap()
        );
    }
}
