//! Checks of request fields every service shares (idempotency keys, ids,
//! page sizes, free text, enums, timestamps, quantities). Each failure names
//! the field as the .proto spells it and what is accepted; a service turns a
//! [`FieldError`] into its own INVALID_ARGUMENT error with `From`.

/// A field that failed its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field path (`declaration.mineral`, `members[2]`).
    pub field: String,
    /// What is wrong and what is accepted.
    pub reason: String,
}

impl From<FieldError> for tonic::Status {
    fn from(e: FieldError) -> Self {
        let why = if e.field == "page_token" {
            crate::status::Reason::PageTokenInvalid
        } else {
            crate::status::Reason::InvalidField
        };
        crate::status::invalid_field_as(why, &e.field, &e.reason)
    }
}

/// Shorthand for a [`FieldError`].
pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

type Result<T = ()> = std::result::Result<T, FieldError>;

/// An idempotency key: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn request_id(id: &str) -> Result {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "request_id",
            "must be 1 to 128 characters of A-Z a-z 0-9 . _ : - (a UUID is a good choice)",
        ))
    }
}

/// An id the service issued (a hyphenated, lower-case UUID); `what` names
/// the call that returns it.
pub fn issued_id(field: &str, id: &str, what: &str) -> Result {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u.hyphenated().to_string() == id => Ok(()),
        _ => Err(invalid(
            field,
            format!("must be an id as returned by {what}"),
        )),
    }
}

/// A page size: 0 means `default`; at most `max`.
pub fn page_size(requested: u32, default: usize, max: usize) -> Result<usize> {
    match requested as usize {
        0 => Ok(default),
        n if n <= max => Ok(n),
        n => Err(invalid(
            "page_size",
            format!("must be at most {max}, got {n}"),
        )),
    }
}

/// Free text of at most `max_chars` characters, with line feeds and tabs
/// but no other control characters (other members' terminals and tools
/// display it); `required` refuses blank text.
pub fn text(field: &str, text: &str, max_chars: usize, required: bool) -> Result {
    if required && text.trim().is_empty() {
        return Err(invalid(field, "is required"));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(
            field,
            "must not contain control characters other than line feed and tab",
        ));
    }
    if text.chars().count() > max_chars {
        return Err(invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    Ok(())
}

/// A known, non-zero enum value.
pub fn enum_value<E>(field: &str, raw: i32) -> Result<E>
where
    E: TryFrom<i32> + Default + PartialEq,
{
    match E::try_from(raw) {
        Ok(v) if v != E::default() => Ok(v),
        _ => Err(invalid(
            field,
            format!("is required and must be a known value (got {raw})"),
        )),
    }
}

/// A timestamp within the range protobuf allows, as nanoseconds since the
/// epoch; `None` (unset) is refused.
pub fn timestamp(field: &str, t: Option<&prost_types::Timestamp>) -> Result<i128> {
    let t = t.ok_or_else(|| invalid(field, "is required"))?;
    // 0001-01-01 .. 9999-12-31, nanos 0..1e9, per google.protobuf.Timestamp.
    if !(-62_135_596_800..=253_402_300_799).contains(&t.seconds)
        || !(0..1_000_000_000).contains(&t.nanos)
    {
        return Err(invalid(field, "is not a valid timestamp"));
    }
    Ok(nanos(t))
}

/// Nanoseconds since the epoch, for comparing timestamps.
pub fn nanos(t: &prost_types::Timestamp) -> i128 {
    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
}

/// The current time as nanoseconds since the epoch.
pub fn now_nanos() -> i128 {
    nanos(&prost_types::Timestamp::from(std::time::SystemTime::now()))
}

/// A finite quantity in `low..=high`, or above `low` when `low_exclusive`.
pub fn quantity(field: &str, v: f64, low: f64, low_exclusive: bool, high: f64) -> Result {
    let above = if low_exclusive { v > low } else { v >= low };
    if v.is_finite() && above && v <= high {
        return Ok(());
    }
    let from = if low_exclusive {
        format!("greater than {low}")
    } else {
        format!("from {low}")
    };
    Err(invalid(
        field,
        format!("must be a finite number {from} and at most {high:e}, got {v}"),
    ))
}

/// A list of at most `max` distinct member codes the policy knows.
pub fn member_codes(
    field: &str,
    list: &[String],
    max: usize,
    partnership: &orex_membership::Partnership,
) -> Result {
    if list.len() > max {
        return Err(invalid(field, format!("at most {max} entries")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, code) in list.iter().enumerate() {
        if partnership.member(code).is_none() {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("unknown member {code:?}"),
            ));
        }
        if !seen.insert(code) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("{code} is listed twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_names_its_field() {
        assert!(request_id("a-1:b.c_d").is_ok());
        assert_eq!(request_id("").unwrap_err().field, "request_id");
        assert!(request_id(&"x".repeat(129)).is_err());
        assert!(request_id("a b").is_err());
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        assert!(issued_id("case_id", &id, "DeclareShortage").is_ok());
        assert!(issued_id("case_id", &id.to_uppercase(), "DeclareShortage").is_err());
        assert_eq!(page_size(0, 50, 500), Ok(50));
        assert!(page_size(501, 50, 500).is_err());
        assert!(text("note", "line\nnext\ttab", 20, false).is_ok());
        assert!(text("note", "bell\u{7}", 20, false).is_err());
        assert!(text("note", "  ", 20, true).is_err());
        assert!(text("note", "ééé", 3, true).is_ok());
        assert!(text("note", "éééé", 3, true).is_err());
        assert!(quantity("t", 0.0, 0.0, true, 1e9).is_err());
        assert!(quantity("t", 0.0, 0.0, false, 1e9).is_ok());
        assert!(quantity("t", f64::NAN, 0.0, false, 1e9).is_err());
        assert!(quantity("t", 1e9 + 1.0, 0.0, false, 1e9).is_err());
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(timestamp("as_of", Some(&bad)).is_err());
        assert!(timestamp("as_of", None).is_err());
    }
}
