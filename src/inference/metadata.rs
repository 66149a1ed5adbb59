//! Parsing of the custom metadata that model exporters write, in both styles we meet:
//! - ultralytics: `names` = a Python dict literal `{0: 'pear', 1: 'x'}`, `imgsz` = `[320, 320]`;
//! - our trainer / JSON: `names` = a JSON list `["normal", ...]` or object `{"0": "normal"}`,
//!   `input_size` = `224`, `[224, 224]` or timm's `[3, 224, 224]`, `mean`/`std` JSON lists.
//!
//! Everything here is lenient and returns `None` on anything it does not understand, so
//! the caller falls back to the config (`model.classes`, `model.img_size`).

/// Parses a label table: a JSON list, a JSON object with integer keys, or a Python dict
/// literal with integer keys and quoted string values. Keys must cover `0..n` exactly.
pub fn parse_names(raw: &str) -> Option<Vec<String>> {
    let raw = raw.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) {
        return match v {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => Some(s),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .filter(|v| !v.is_empty()),
            serde_json::Value::Object(map) => {
                let pairs = map
                    .into_iter()
                    .map(|(k, v)| Some((k.trim().parse::<usize>().ok()?, v.as_str()?.to_owned())))
                    .collect::<Option<Vec<_>>>()?;
                dense(pairs)
            }
            _ => None,
        };
    }
    parse_python_dict(raw)
}

/// `{0: 'pear', 1: "it's"}` → pairs; handles both quote styles and backslash escapes.
fn parse_python_dict(raw: &str) -> Option<Vec<String>> {
    let inner = raw.strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ':' {
                break;
            }
            key.push(c);
            chars.next();
        }
        chars.next()?; // ':'
        let key: usize = key.trim().parse().ok()?;
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let quote = chars.next().filter(|c| *c == '\'' || *c == '"')?;
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => value.push(chars.next()?),
                c if c == quote => break,
                c => value.push(c),
            }
        }
        pairs.push((key, value));
    }
    dense(pairs)
}

fn dense(mut pairs: Vec<(usize, String)>) -> Option<Vec<String>> {
    pairs.sort_by_key(|(k, _)| *k);
    if pairs.is_empty() || pairs.iter().enumerate().any(|(i, (k, _))| i != *k) {
        return None;
    }
    Some(pairs.into_iter().map(|(_, v)| v).collect())
}

/// Parses an image size: `224` → (224, 224); `[h, w]`; `[c, h, w]` (timm). Returns
/// (height, width).
pub fn parse_size(raw: &str) -> Option<(u32, u32)> {
    let v: serde_json::Value = serde_json::from_str(raw.trim()).ok()?;
    let dims: Vec<u32> = match v {
        serde_json::Value::Number(n) => vec![u32::try_from(n.as_u64()?).ok()?],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    let (h, w) = match dims.as_slice() {
        [s] => (*s, *s),
        [h, w] => (*h, *w),
        [_, h, w] => (*h, *w),
        _ => return None,
    };
    (h > 0 && w > 0 && h <= 8192 && w <= 8192).then_some((h, w))
}

/// Parses a 3-element list of finite floats (`mean`, `std`); `std` entries must be > 0
/// (checked by the caller).
pub fn parse_triplet(raw: &str) -> Option<[f32; 3]> {
    let v: Vec<f64> = serde_json::from_str(raw.trim()).ok()?;
    match v.as_slice() {
        [a, b, c] if v.iter().all(|x| x.is_finite()) => Some([*a as f32, *b as f32, *c as f32]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ultralytics_dict() {
        assert_eq!(parse_names("{0: 'pear'}"), Some(vec!["pear".to_owned()]));
        assert_eq!(
            parse_names("{0: 'a b', 1: \"it's\", 2: 'x\\'y'}"),
            Some(vec!["a b".to_owned(), "it's".to_owned(), "x'y".to_owned()])
        );
        // Out-of-order keys are fine, gaps are not.
        assert_eq!(
            parse_names("{1: 'b', 0: 'a'}"),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_names("{0: 'a', 2: 'c'}"), None);
        assert_eq!(parse_names("{0: pear}"), None);
        assert_eq!(parse_names("{}"), None);
        assert_eq!(parse_names("{0: 'unterminated}"), None);
    }

    #[test]
    fn names_json() {
        assert_eq!(
            parse_names(r#"["normal","rot"]"#),
            Some(vec!["normal".into(), "rot".into()])
        );
        assert_eq!(
            parse_names(r#"{"0":"normal","1":"rot"}"#),
            Some(vec!["normal".into(), "rot".into()])
        );
        assert_eq!(parse_names("[]"), None);
        assert_eq!(parse_names("[1, 2]"), None);
        assert_eq!(parse_names("garbage"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("224"), Some((224, 224)));
        assert_eq!(parse_size("[320, 320]"), Some((320, 320)));
        assert_eq!(parse_size("[256, 320]"), Some((256, 320)));
        assert_eq!(parse_size("[3, 96, 128]"), Some((96, 128)));
        assert_eq!(parse_size("[0, 0]"), None);
        assert_eq!(parse_size("[-1]"), None);
        assert_eq!(parse_size("abc"), None);
    }

    #[test]
    fn triplets() {
        assert_eq!(
            parse_triplet("[0.485, 0.456, 0.406]"),
            Some([0.485, 0.456, 0.406])
        );
        assert_eq!(parse_triplet("[1, 2]"), None);
        assert_eq!(parse_triplet("x"), None);
    }
}
