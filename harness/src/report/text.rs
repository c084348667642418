//! Small text helpers the renderers share: escaping, control-character cleaning, names, durations.

use serde::Serialize;

/// Removes ANSI escape sequences and control characters other than newline and tab.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte (0x40..=0x7e); other escapes: ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for f in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&f) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for XML and HTML (element content and quoted attributes), after [`clean`].
pub(crate) fn esc(s: &str) -> String {
    let s = clean(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The serde name of a unit enum value (`previous-unused`, `dropped`, …).
pub(crate) fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// A duration in ms for people: `850 ms`, `1.5 s`, `4 min 58 s`.
pub(crate) fn human_ms(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    if a < 1_000 {
        format!("{sign}{a} ms")
    } else if a < 60_000 {
        let tenths = (a + 50) / 100;
        if tenths.is_multiple_of(10) {
            format!("{sign}{} s", tenths / 10)
        } else {
            format!("{sign}{}.{} s", tenths / 10, tenths % 10)
        }
    } else {
        let s = (a + 500) / 1_000;
        let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
        match (h, s) {
            (0, 0) => format!("{sign}{m} min"),
            (0, _) => format!("{sign}{m} min {s} s"),
            (_, _) if m == 0 && s == 0 => format!("{sign}{h} h"),
            _ => format!("{sign}{h} h {m} min"),
        }
    }
}

/// The last `n` lines of `s` (after [`clean`]), and how many lines came before them.
pub(crate) fn tail_lines(s: &str, n: usize) -> (Vec<String>, usize) {
    let cleaned = clean(s);
    let lines: Vec<&str> = cleaned.lines().collect();
    let lines: Vec<&str> = {
        let mut end = lines.len();
        while end > 0 && lines[end - 1].trim().is_empty() {
            end -= 1;
        }
        lines[..end].to_vec()
    };
    let skip = lines.len().saturating_sub(n);
    (lines[skip..].iter().map(|l| (*l).to_owned()).collect(), skip)
}

/// `n thing` or `n things`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_strips_controls() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(clean("\u{1b}[31mred\u{1b}[0m\u{7}\r\nok\t!"), "red\nok\t!");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_ms(0), "0 ms");
        assert_eq!(human_ms(999), "999 ms");
        assert_eq!(human_ms(1_000), "1 s");
        assert_eq!(human_ms(12_345), "12.3 s");
        assert_eq!(human_ms(300_000), "5 min");
        assert_eq!(human_ms(298_000), "4 min 58 s");
        assert_eq!(human_ms(7_200_000), "2 h");
        assert_eq!(human_ms(-1_500), "-1.5 s");
    }

    #[test]
    fn tails_skip_trailing_blank_lines() {
        let (t, skipped) = tail_lines("a\nb\nc\n\n", 2);
        assert_eq!(t, vec!["b", "c"]);
        assert_eq!(skipped, 1);
        assert_eq!(tail_lines("", 3), (Vec::new(), 0));
    }
}
