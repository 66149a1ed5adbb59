//! Byte-scanning helpers shared by the framer, the hex rewrite, the depth check and the
//! envelope fast path.
//!
//! Owns only the search for the bytes that end a run of JSON string contents. It must
//! never interpret JSON beyond that, and never index out of bounds.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const QUOTE: u64 = LO * b'"' as u64;
const BACKSLASH: u64 = LO * b'\\' as u64;

/// True when some byte of `word` is zero (exact as a yes/no answer).
#[inline]
fn has_zero_byte(word: u64) -> bool {
    has_byte_below(word, 1)
}

/// True when some byte of `word` is below `n` (exact as a yes/no answer for n <= 128).
#[inline]
fn has_byte_below(word: u64, n: u8) -> bool {
    word.wrapping_sub(LO * u64::from(n)) & !word & HI != 0
}

/// A byte that ends a run of plain string contents: `"`, `\\` or a control byte
/// (below 0x20, which JSON does not allow raw inside a string).
#[inline]
fn is_string_stop(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Offset of the first `"`, `\\` or control byte (below 0x20), eight bytes at a time.
#[inline]
pub(crate) fn find_string_stop(bytes: &[u8]) -> Option<usize> {
    find_by_words(
        bytes,
        |w| has_zero_byte(w ^ QUOTE) || has_zero_byte(w ^ BACKSLASH) || has_byte_below(w, 0x20),
        is_string_stop,
    )
}

/// Offset (from the start of `bytes`) of the first `"` or `\`, eight bytes at a time.
#[inline]
pub(crate) fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    find_by_words(
        bytes,
        |w| has_zero_byte(w ^ QUOTE) || has_zero_byte(w ^ BACKSLASH),
        |b| b == b'"' || b == b'\\',
    )
}

/// Offset of the first byte with `byte_hit`, reading eight bytes at a time: a word for
/// which `word_hit` (a little-endian word holds a hit byte) is false is skipped whole;
/// otherwise, and in the tail, bytes are tested one by one.
#[inline(always)]
fn find_by_words(
    bytes: &[u8],
    word_hit: impl Fn(u64) -> bool,
    byte_hit: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_hit(u64::from_le_bytes(word)) {
            return chunk
                .iter()
                .position(|&b| byte_hit(b))
                .map(|off| base + off);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| byte_hit(b))
        .map(|off| base + off)
}

/// Index just past the end of the JSON string whose contents start at `i` (escapes
/// respected), or `bytes.len()` when it does not close.
pub(crate) fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    loop {
        let rest = bytes.get(i..).unwrap_or_default();
        match find_quote_or_backslash(rest) {
            None => return bytes.len(),
            Some(off) if rest.get(off) == Some(&b'"') => return i + off + 1,
            // Skip the backslash and the byte it escapes.
            Some(off) => i += off + 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_first_special_byte() {
        assert_eq!(find_quote_or_backslash(b""), None);
        assert_eq!(find_quote_or_backslash(b"abcdefghijklmnop"), None);
        assert_eq!(find_quote_or_backslash(b"\""), Some(0));
        assert_eq!(find_quote_or_backslash(b"abcdefgh\\"), Some(8));
        assert_eq!(find_quote_or_backslash(b"abcdefg\"\\"), Some(7));
        assert_eq!(find_quote_or_backslash(b"\xff\x80\x22"), Some(2));
    }

    #[test]
    fn skips_strings() {
        assert_eq!(skip_string(br#"abc" x"#, 0), 4);
        assert_eq!(skip_string(br#"a\"b" x"#, 0), 5);
        assert_eq!(skip_string(br#"a\\" x"#, 0), 4);
        assert_eq!(skip_string(br#"a\"#, 0), 2);
        assert_eq!(skip_string(br#"abc"#, 0), 3);
        assert_eq!(skip_string(b"", 5), 0);
    }

    #[test]
    fn finds_first_string_stop() {
        assert_eq!(find_string_stop(b""), None);
        assert_eq!(find_string_stop(b"abcdefgh\x7f\xc3\xa4ijklmn"), None);
        assert_eq!(find_string_stop(b"abcdefgh\x1f"), Some(8));
        assert_eq!(find_string_stop(b"abc\0"), Some(3));
        assert_eq!(find_string_stop(b"a b\\\""), Some(3));
        assert_eq!(find_string_stop(b"\xff\x80\x20\x21\""), Some(4));
    }

    proptest! {
        #[test]
        fn matches_bytewise_search(bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\')], 0..64)) {
            let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\');
            prop_assert_eq!(find_quote_or_backslash(&bytes), expected);
        }

        #[test]
        fn string_stop_matches_bytewise_search(bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), 0x1fu8..=0x21, Just(b'\\')], 0..64)) {
            let expected = bytes.iter().position(|&b| is_string_stop(b));
            prop_assert_eq!(find_string_stop(&bytes), expected);
        }
    }
}
