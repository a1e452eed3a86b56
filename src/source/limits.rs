//! What one message from Skaffold may cost to decode.
//!
//! A cap on bytes alone does not bound memory: decoding amplifies. An empty repeated
//! protobuf message is 2 bytes on the wire and a struct of tens of bytes once
//! decoded; `0,` is 2 bytes of JSON and a 32-byte `serde_json::Value` (plus the
//! vector's slack), then a `prost-reflect` value, then a struct. So every message is
//! checked before it is decoded, without allocating:
//!
//! - its size: [`MAX_EVENT_BYTES`] for a protobuf message, [`MAX_JSON_BYTES`] for a
//!   JSON line or record (gateway chunk, `--event-log-file` line);
//! - how many values it holds ([`MAX_VALUES`]: protobuf fields and repeated elements,
//!   JSON scalars, arrays and objects) and how deeply they nest ([`MAX_DEPTH`]).
//!
//! A message over a limit is counted as invalid (`undecodable`), reported, and the
//! stream goes on. Skaffold's largest events (a MetaEvent listing every artifact, an
//! error with a long build log) are far below these limits; the GetState passthrough
//! has its own limit (`server::upstream`).
//!
//! Worst case, measured (`tests/hostile_input.rs`, the process's own peak RSS):
//! decoding one hostile message at these limits adds under 8 MiB to the peak (the
//! same message decoded without the checks: 64 MiB).

/// Largest protobuf event decoded (bytes). Larger messages of the gRPC stream are
/// counted as invalid without being decoded; see also `grpc::MAX_FRAME_BYTES`.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Largest JSON line or record decoded (bytes): the JSON form of an event is larger
/// than its protobuf form (field names, escapes).
pub const MAX_JSON_BYTES: usize = 8 * 1024 * 1024;

/// Most values in one message: protobuf fields (each element of a repeated field, each
/// map entry) or JSON values (scalars, arrays, objects).
pub const MAX_VALUES: usize = 100_000;

/// Deepest nesting of messages / JSON containers in one message (Skaffold's events
/// nest less than 10 deep).
pub const MAX_DEPTH: usize = 64;

/// Why a message is refused before it is decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooBig {
    /// More bytes than the cap.
    #[error("{0} bytes, over the {1}-byte limit")]
    Bytes(usize, usize),
    /// More values than [`MAX_VALUES`].
    #[error("more than {MAX_VALUES} values")]
    Values,
    /// Deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH}")]
    Depth,
}

/// Checks a JSON text's size, value count and nesting without parsing it (strings are
/// skipped; what is not JSON is left for the parser to report).
pub fn check_json(bytes: &[u8]) -> Result<(), TooBig> {
    if bytes.len() > MAX_JSON_BYTES {
        return Err(TooBig::Bytes(bytes.len(), MAX_JSON_BYTES));
    }
    let mut depth = 0usize;
    // Every value but the first is preceded by `,` or opens a container, or follows
    // `:` (an object member's value); counting those bounds the values.
    let mut values = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                values += 1;
                if depth > MAX_DEPTH {
                    return Err(TooBig::Depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' | b':' => values += 1,
            _ => continue,
        }
        if values > MAX_VALUES {
            return Err(TooBig::Values);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_within_the_limits_passes() {
        let line = br#"{"result":{"timestamp":"2021-04-07T17:50:08Z","taskEvent":{"id":"DevLoop-0","task":"DevLoop","status":"InProgress"}}}"#;
        assert_eq!(check_json(line), Ok(()));
        // Brackets and commas inside strings are text.
        let s = format!(r#"{{"entry":"{}"}}"#, "[,{:".repeat(200_000));
        assert_eq!(check_json(s.as_bytes()), Ok(()));
        let s = format!(r#"{{"entry":"\"{}"}}"#, "[".repeat(100));
        assert_eq!(check_json(s.as_bytes()), Ok(()));
    }

    #[test]
    fn json_floods_are_refused() {
        let zeros = format!("[{}0]", "0,".repeat(MAX_VALUES));
        assert_eq!(check_json(zeros.as_bytes()), Err(TooBig::Values));
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(check_json(deep.as_bytes()), Err(TooBig::Depth));
        let ok = "[".repeat(MAX_DEPTH);
        assert_eq!(check_json(ok.as_bytes()), Ok(()));
        let big = vec![b' '; MAX_JSON_BYTES + 1];
        assert!(matches!(check_json(&big), Err(TooBig::Bytes(..))));
    }
}
