//! Joda-Time date patterns (`DateTimeFormat.forPattern`, what Flume's
//! `RegexExtractorInterceptorMillisSerializer` takes in `pattern`) parsed with chrono.
//!
//! Letters: `y` (`yy` two digits), `M` (`MMM` short name, `MMMM` full name), `d`, `H`, `k`
//! (1–24 read as `H`), `h`, `K`, `m`, `s`, `S` (`SSS`, `SSSSSS`, `SSSSSSSSS`), `a`, `E`
//! (`EEEE` full name), `D`, `Z` (`+0100`), `ZZ` (`+01:00`), `'literal'` and `''`. Other
//! letters (zone names `z`, week fields, eras) are a config error naming the letter. As in
//! Joda, fields the pattern lacks default to 1970-01-01 00:00:00.000, and without `Z` the
//! text is read in the agent's local time zone (the JVM's default zone in Flume).

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{Local, TimeZone};

/// A parsed pattern: chrono's format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JodaPattern {
    strftime: String,
    has_offset: bool,
}

impl JodaPattern {
    pub fn new(pattern: &str) -> Result<Self, String> {
        let mut out = String::new();
        let mut has_offset = false;
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // '' is a quote; 'text' is literal text.
                if chars.get(i + 1) == Some(&'\'') {
                    out.push('\'');
                    i += 2;
                    continue;
                }
                let end = chars[i + 1..]
                    .iter()
                    .position(|x| *x == '\'')
                    .ok_or("an unterminated quote")?;
                for l in &chars[i + 1..i + 1 + end] {
                    push_literal(&mut out, *l);
                }
                i += end + 2;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                push_literal(&mut out, c);
                i += 1;
                continue;
            }
            let n = chars[i..].iter().take_while(|x| **x == c).count();
            let spec = match (c, n) {
                ('y' | 'Y' | 'u', 2) => "%y",
                ('y' | 'Y' | 'u', _) => "%Y",
                ('M', 1 | 2) => "%m",
                ('M', 3) => "%b",
                ('M', _) => "%B",
                ('d', _) => "%d",
                ('H' | 'k', _) => "%H",
                ('h' | 'K', _) => "%I",
                ('m', _) => "%M",
                ('s', _) => "%S",
                ('S', 3) => "%3f",
                ('S', 6) => "%6f",
                ('S', 9) => "%9f",
                ('a', _) => "%p",
                ('E', 1..=3) => "%a",
                ('E', _) => "%A",
                ('D', _) => "%j",
                ('Z', 1) => {
                    has_offset = true;
                    "%z"
                }
                ('Z', _) => {
                    has_offset = true;
                    "%:z"
                }
                ('S', _) => return Err("fractions other than SSS, SSSSSS or SSSSSSSSS".into()),
                (other, _) => return Err(format!("the pattern letter `{other}`")),
            };
            out.push_str(spec);
            i += n;
        }
        if StrftimeItems::new(&out).any(|item| matches!(item, Item::Error)) {
            return Err(format!("the pattern `{pattern}`"));
        }
        Ok(Self {
            strftime: out,
            has_offset,
        })
    }

    /// Milliseconds since the epoch of `text`, or why it does not match.
    pub fn millis(&self, text: &str) -> Result<i64, String> {
        let mut p = Parsed::new();
        chrono::format::parse(&mut p, text.trim(), StrftimeItems::new(&self.strftime))
            .map_err(|e| e.to_string())?;
        // Joda's defaults for the fields the pattern lacks.
        if p.year().is_none() && p.year_mod_100().is_none() {
            let _ = p.set_year(1970);
        }
        if p.month().is_none() && p.ordinal().is_none() {
            let _ = p.set_month(1);
        }
        if p.day().is_none() && p.ordinal().is_none() {
            let _ = p.set_day(1);
        }
        if p.hour_div_12().is_none() {
            let _ = p.set_ampm(false);
        }
        if p.hour_mod_12().is_none() {
            let _ = p.set_hour12(12);
        }
        if p.minute().is_none() {
            let _ = p.set_minute(0);
        }
        let naive = p
            .to_naive_datetime_with_offset(0)
            .map_err(|e| e.to_string())?;
        let at = if self.has_offset {
            p.to_datetime()
                .map_err(|e| e.to_string())?
                .timestamp_millis()
        } else {
            Local
                .from_local_datetime(&naive)
                .earliest()
                .ok_or("a local time that does not exist (a DST gap)")?
                .timestamp_millis()
        };
        Ok(at)
    }
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_like_joda() -> Result<(), String> {
        let p = JodaPattern::new("yyyy-MM-dd HH:mm:ss.SSS Z")?;
        assert_eq!(
            p.millis("2012-10-17 14:34:44.123 +0000")?,
            1_350_484_484_123
        );
        let p = JodaPattern::new("dd/MMM/yyyy:HH:mm:ss ZZ")?;
        assert_eq!(p.millis("17/Oct/2012:16:34:44 +02:00")?, 1_350_484_484_000);
        let p = JodaPattern::new("yyyy-MM-dd'T'HH:mm:ssZ")?;
        assert_eq!(p.millis("2012-10-17T14:34:44+0000")?, 1_350_484_484_000);
        let p = JodaPattern::new("yyyyMMdd Z")?;
        assert_eq!(p.millis("20121017 +0000")?, 1_350_432_000_000);
        let p = JodaPattern::new("hh:mm a Z")?;
        assert_eq!(p.millis("02:30 PM +0000")?, 52_200_000);
        assert!(p.millis("not a time").is_err());
        assert!(JodaPattern::new("yyyy zzz").is_err());
        assert!(JodaPattern::new("'open").is_err());
        Ok(())
    }
}
