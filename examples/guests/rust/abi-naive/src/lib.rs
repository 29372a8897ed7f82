//! The drop-by-level decision (drop `trace` / `debug` events, by `level` header or the body's
//! first word) behind a naive `list<event>` ABI (`wit/abi-naive.wit`), so `bench_wasm_abi` can
//! measure that ABI against the flat batch of `sluice:pipeline` with the same guest logic.

wit_bindgen::generate!({
    path: "wit",
    world: "naive",
});

/// Whether an event is below `info`: its `level` header, else its body's first word.
fn below_info(headers: &[(String, String)], body: &[u8]) -> bool {
    let word: &[u8] = match headers.iter().find(|(k, _)| k == "level") {
        Some((_, v)) => v.as_bytes(),
        None => {
            if !body
                .first()
                .is_some_and(|b| matches!(b | 0x20, b't' | b'd'))
            {
                return false;
            }
            let head = &body[..body.len().min(9)];
            let end = head.iter().position(|b| *b == b' ').unwrap_or(head.len());
            &head[..end]
        }
    };
    let word = word.strip_suffix(b":").unwrap_or(word);
    word.eq_ignore_ascii_case(b"trace") || word.eq_ignore_ascii_case(b"debug")
}

struct Naive;

impl Guest for Naive {
    fn filter(events: Vec<Event>) -> Vec<u8> {
        events
            .iter()
            .map(|e| u8::from(below_info(&e.headers, &e.body)))
            .collect()
    }

    fn filter_events(events: Vec<Event>) -> Vec<Event> {
        events
            .into_iter()
            .filter(|e| !below_info(&e.headers, &e.body))
            .collect()
    }
}

export!(Naive);

#[cfg(test)]
mod tests {
    use super::below_info;

    #[test]
    fn levels() {
        let level = |v: &str| vec![("level".to_string(), v.to_string())];
        assert!(below_info(&level("DEBUG"), b"x"));
        assert!(!below_info(&level("warn"), b"DEBUG x"));
        assert!(below_info(&[], b"debug: x"));
        assert!(!below_info(&[], b"info x"));
        assert!(!below_info(&[], b"abcdefghijklmnop"));
    }
}
