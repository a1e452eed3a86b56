//! An encoded v1 `LogEntry`, read in place: the fields of the lean `LogEntry`
//! (`proto/lean/v1.proto`, what the fold reads) as views of the received bytes.
//!
//! The gRPC source decodes every v1 message into its domain event where it lies in
//! tonic's receive buffer (see `source::grpc::EventDecoder`); nothing of it outlives
//! the decode, so its strings need not be `Bytes`. Read through prost, each string
//! field was a reference-counted slice of the message: two atomic operations per
//! field, a large part of the reader's CPU per event (the reader, not the fold, sets
//! the exporter's pace). Read here, a field is a `&[u8]` and nothing is counted,
//! copied or allocated.
//!
//! The semantics are protobuf's, as prost implements them, for this schema: the last
//! value of a scalar or string field wins, a message field given twice is merged,
//! a oneof member replaces another member and merges into the same one, unknown
//! fields (groups included) are skipped, a known field with the wrong wire type and
//! any malformed framing fail the whole message. `tests/lean_proto.rs` checks the result
//! against prost's decode of the lean `LogEntry` on real streams and on mutations of
//! them.

// The fields and members are the proto's (`proto/lean/v1.proto`), named as prost names
// them; each struct is its message.
#![allow(missing_docs)]

use prost_types::Timestamp;

use super::wire::{END_GROUP, I32, I64, LEN, START_GROUP, VARINT};

/// Why bytes are not a `LogEntry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct Malformed(&'static str);

/// A v1 `LogEntry`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogEntry<'a> {
    pub timestamp: Option<Timestamp>,
    pub event: Option<Event<'a>>,
}

/// A v1 `Event`: one of its members.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_type: Option<EventType<'a>>,
}

/// The members of `Event.event_type` the fold reads.
#[derive(Debug, Clone, PartialEq)]
pub enum EventType<'a> {
    MetaEvent(MetaEvent<'a>),
    BuildEvent(BuildEvent<'a>),
    DeployEvent(DeployEvent<'a>),
    PortEvent(PortEvent<'a>),
    StatusCheckEvent(StatusCheckEvent<'a>),
    ResourceStatusCheckEvent(ResourceStatusCheckEvent<'a>),
    FileSyncEvent(FileSyncEvent<'a>),
    DebuggingContainerEvent,
    DevLoopEvent(DevLoopEvent<'a>),
    TerminationEvent(TerminationEvent<'a>),
    TestEvent(TestEvent<'a>),
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetaEvent<'a> {
    pub entry: &'a [u8],
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct BuildEvent<'a> {
    pub artifact: &'a [u8],
    pub status: &'a [u8],
    pub err: &'a [u8],
    pub err_code: i32,
    pub actionable_err: Option<ActionableErr<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeployEvent<'a> {
    pub status: &'a [u8],
    pub err: &'a [u8],
    pub err_code: i32,
    pub actionable_err: Option<ActionableErr<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct PortEvent<'a> {
    pub local_port: i32,
    pub namespace: &'a [u8],
    pub resource_type: &'a [u8],
    pub resource_name: &'a [u8],
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatusCheckEvent<'a> {
    pub status: &'a [u8],
    pub err: &'a [u8],
    pub err_code: i32,
    pub actionable_err: Option<ActionableErr<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ResourceStatusCheckEvent<'a> {
    pub resource: &'a [u8],
    pub status: &'a [u8],
    pub err: &'a [u8],
    pub status_code: i32,
    pub actionable_err: Option<ActionableErr<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileSyncEvent<'a> {
    pub file_count: i32,
    pub image: &'a [u8],
    pub status: &'a [u8],
    pub err: &'a [u8],
    pub err_code: i32,
    pub actionable_err: Option<ActionableErr<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct DevLoopEvent<'a> {
    pub iteration: i32,
    pub status: &'a [u8],
    pub err: Option<ActionableErr<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct TerminationEvent<'a> {
    pub status: &'a [u8],
    pub err: Option<ActionableErr<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct TestEvent<'a> {
    pub status: &'a [u8],
    pub actionable_err: Option<ActionableErr<'a>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ActionableErr<'a> {
    pub err_code: i32,
    pub message: &'a [u8],
}

/// Reads `bytes` as a `LogEntry`.
pub fn read(bytes: &[u8]) -> Result<LogEntry<'_>, Malformed> {
    let mut entry = LogEntry::default();
    merge(&mut entry, bytes, 0)?;
    Ok(entry)
}

// === the wire format ===

/// Nesting allowed (prost's recursion limit).
const DEPTH: u32 = 100;

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Malformed> {
        super::wire::read_varint(&mut self.buf).map_err(Malformed)
    }

    /// A field's number and wire type.
    #[inline(always)]
    fn key(&mut self) -> Result<(u32, u8), Malformed> {
        let key = u32::try_from(self.varint()?).map_err(|_| Malformed("key over 32 bits"))?;
        let wire = (key & 7) as u8;
        if wire > I32 {
            return Err(Malformed("unknown wire type"));
        }
        if key >> 3 == 0 {
            return Err(Malformed("field number 0"));
        }
        Ok((key >> 3, wire))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Malformed> {
        let n = usize::try_from(n).map_err(|_| Malformed("truncated field"))?;
        if n > self.buf.len() {
            return Err(Malformed("truncated field"));
        }
        let (v, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(v)
    }

    fn len_delimited(&mut self, wire: u8) -> Result<&'a [u8], Malformed> {
        expect(wire, LEN)?;
        let n = self.varint()?;
        self.take(n)
    }

    /// An `int32` (or `int64`) field: a varint, truncated as prost does.
    fn int(&mut self, wire: u8) -> Result<u64, Malformed> {
        expect(wire, VARINT)?;
        self.varint()
    }

    /// Skips the value of an unknown field `number` at nesting `depth` (a whole group
    /// for a group).
    fn skip(&mut self, number: u32, wire: u8, depth: u32) -> Result<(), Malformed> {
        deep(depth)?;
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.take(8).map(drop),
            I32 => self.take(4).map(drop),
            LEN => {
                let n = self.varint()?;
                self.take(n).map(drop)
            }
            START_GROUP => loop {
                let (inner, w) = self.key()?;
                if w == END_GROUP {
                    return if inner == number {
                        Ok(())
                    } else {
                        Err(Malformed("unexpected end group"))
                    };
                }
                self.skip(inner, w, depth + 1)?;
            },
            _ => Err(Malformed("unexpected end group")),
        }
    }
}

fn expect(wire: u8, want: u8) -> Result<(), Malformed> {
    if wire == want {
        Ok(())
    } else {
        Err(Malformed("wrong wire type for a known field"))
    }
}

/// A message whose fields can be read onto it.
trait Message<'a> {
    /// Reads the value of field `number` from `r` onto `self` (skips it when unknown).
    fn field(
        &mut self,
        r: &mut Reader<'a>,
        number: u32,
        wire: u8,
        depth: u32,
    ) -> Result<(), Malformed>;
}

/// Fails at nesting `depth` [`DEPTH`], where prost stops.
fn deep(depth: u32) -> Result<(), Malformed> {
    if depth >= DEPTH {
        Err(Malformed("nested too deep"))
    } else {
        Ok(())
    }
}

/// Reads the fields in `bytes`, at nesting `depth`, onto `m` (a message given again
/// merges).
fn merge<'a, M: Message<'a>>(m: &mut M, bytes: &'a [u8], depth: u32) -> Result<(), Malformed> {
    let mut r = Reader { buf: bytes };
    while !r.buf.is_empty() {
        let (number, wire) = r.key()?;
        m.field(&mut r, number, wire, depth)?;
    }
    Ok(())
}

/// Reads the value of a message field at nesting `depth` onto `m`.
fn sub<'a, M: Message<'a>>(
    r: &mut Reader<'a>,
    wire: u8,
    m: &mut M,
    depth: u32,
) -> Result<(), Malformed> {
    let bytes = r.len_delimited(wire)?;
    deep(depth)?;
    merge(m, bytes, depth + 1)
}

fn int32(r: &mut Reader<'_>, wire: u8) -> Result<i32, Malformed> {
    // prost keeps the low 32 bits, as the protobuf spec says for int32.
    r.int(wire).map(|v| v as i32)
}

impl<'a> Message<'a> for Timestamp {
    fn field(&mut self, r: &mut Reader<'a>, n: u32, w: u8, d: u32) -> Result<(), Malformed> {
        match n {
            1 => self.seconds = r.int(w)? as i64,
            2 => self.nanos = int32(r, w)?,
            _ => r.skip(n, w, d)?,
        }
        Ok(())
    }
}

impl<'a> Message<'a> for LogEntry<'a> {
    fn field(&mut self, r: &mut Reader<'a>, n: u32, w: u8, d: u32) -> Result<(), Malformed> {
        match n {
            1 => sub(r, w, self.timestamp.get_or_insert_default(), d),
            2 => sub(r, w, self.event.get_or_insert_default(), d),
            _ => r.skip(n, w, d),
        }
    }
}

/// Reads a oneof member: onto the member already set when it is the same one, else
/// onto a new one that replaces it.
fn member<'a, M: Message<'a> + Default>(
    r: &mut Reader<'a>,
    w: u8,
    d: u32,
    slot: &mut Option<EventType<'a>>,
    get: impl for<'b> Fn(&'b mut EventType<'a>) -> Option<&'b mut M>,
    wrap: impl Fn(M) -> EventType<'a>,
) -> Result<(), Malformed> {
    if let Some(m) = slot.as_mut().and_then(get) {
        return sub(r, w, m, d);
    }
    let mut m = M::default();
    sub(r, w, &mut m, d)?;
    *slot = Some(wrap(m));
    Ok(())
}

/// `DebuggingContainerEvent`: no field the fold reads.
#[derive(Default)]
struct Empty;

impl<'a> Message<'a> for Empty {
    fn field(&mut self, r: &mut Reader<'a>, n: u32, w: u8, d: u32) -> Result<(), Malformed> {
        r.skip(n, w, d)
    }
}

impl<'a> Message<'a> for Event<'a> {
    fn field(&mut self, r: &mut Reader<'a>, n: u32, w: u8, d: u32) -> Result<(), Malformed> {
        use EventType as E;
        let slot = &mut self.event_type;
        macro_rules! member {
            ($variant:ident) => {
                member(
                    r,
                    w,
                    d,
                    slot,
                    |e| match e {
                        E::$variant(m) => Some(m),
                        _ => None,
                    },
                    E::$variant,
                )
            };
        }
        match n {
            1 => member!(MetaEvent),
            2 => member!(BuildEvent),
            3 => member!(DeployEvent),
            4 => member!(PortEvent),
            5 => member!(StatusCheckEvent),
            6 => member!(ResourceStatusCheckEvent),
            7 => member!(FileSyncEvent),
            8 => {
                sub(r, w, &mut Empty, d)?;
                *slot = Some(E::DebuggingContainerEvent);
                Ok(())
            }
            9 => member!(DevLoopEvent),
            10 => member!(TerminationEvent),
            11 => member!(TestEvent),
            _ => r.skip(n, w, d),
        }
    }
}

/// Implements [`Message`] for a struct from its fields' numbers and kinds: `bytes`
/// (a string, as bytes), `int32`, `err` (an `ActionableErr`).
macro_rules! message {
    ($ty:ident { $($n:literal => $f:ident: $kind:ident),* $(,)? }) => {
        impl<'a> Message<'a> for $ty<'a> {
            fn field(&mut self, r: &mut Reader<'a>, n: u32, w: u8, d: u32) -> Result<(), Malformed> {
                match n {
                    $($n => message!(@read $kind, self.$f, r, w, d),)*
                    _ => r.skip(n, w, d)?,
                }
                Ok(())
            }
        }
    };
    (@read bytes, $place:expr, $r:ident, $w:ident, $d:ident) => { $place = $r.len_delimited($w)? };
    (@read int32, $place:expr, $r:ident, $w:ident, $d:ident) => { $place = int32($r, $w)? };
    (@read err, $place:expr, $r:ident, $w:ident, $d:ident) => {
        sub($r, $w, $place.get_or_insert_default(), $d)?
    };
}

message!(MetaEvent { 1 => entry: bytes });
message!(BuildEvent {
    1 => artifact: bytes, 2 => status: bytes, 3 => err: bytes, 4 => err_code: int32,
    5 => actionable_err: err,
});
message!(DeployEvent {
    1 => status: bytes, 2 => err: bytes, 3 => err_code: int32, 4 => actionable_err: err,
});
message!(PortEvent {
    1 => local_port: int32, 5 => namespace: bytes, 7 => resource_type: bytes,
    8 => resource_name: bytes,
});
message!(StatusCheckEvent {
    1 => status: bytes, 3 => err: bytes, 4 => err_code: int32, 5 => actionable_err: err,
});
message!(ResourceStatusCheckEvent {
    1 => resource: bytes, 2 => status: bytes, 4 => err: bytes, 5 => status_code: int32,
    6 => actionable_err: err,
});
message!(FileSyncEvent {
    1 => file_count: int32, 2 => image: bytes, 3 => status: bytes, 4 => err: bytes,
    5 => err_code: int32, 6 => actionable_err: err,
});
message!(DevLoopEvent { 1 => iteration: int32, 2 => status: bytes, 3 => err: err });
message!(TerminationEvent { 1 => status: bytes, 2 => err: err });
message!(TestEvent { 1 => status: bytes, 2 => actionable_err: err });
message!(ActionableErr { 1 => err_code: int32, 2 => message: bytes });

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::simulator::scenario::Script;

    #[test]
    fn strings_are_views_of_the_message_and_fields_are_read() {
        let entry = Script::new()
            .build(
                0,
                "leeroy-web",
                "Failed",
                crate::pb::enums::StatusCode::BuildPushAccessDenied,
            )
            .entries(1_700_000_000_000_000_000)
            .remove(0);
        let bytes = entry.encode_to_vec();
        let read = read(&bytes).unwrap();
        assert_eq!(read.timestamp.map(|t| t.seconds), Some(1_700_000_000));
        let Some(Event {
            event_type: Some(EventType::BuildEvent(b)),
        }) = read.event
        else {
            panic!("{read:?}");
        };
        assert_eq!(b.artifact, b"leeroy-web");
        assert_eq!(b.status, b"Failed");
        let err = b.actionable_err.expect("a failure carries its error");
        assert_eq!(err.message, b"docker build returned exit code 1");
        let inside = bytes.as_ptr_range();
        assert!(inside.contains(&b.artifact.as_ptr()), "a view, not a copy");
        assert!(read_err(&bytes[..bytes.len() - 1]));
    }

    fn read_err(bytes: &[u8]) -> bool {
        read(bytes).is_err()
    }
}
