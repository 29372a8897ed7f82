//! `sluice top`: a terminal dashboard of a running agent, read from its Flume-JSON metrics
//! (`/metrics`) once per interval: per component events/s in and out, channel fill, sink
//! failures and latency, blocked sources, guest faults and reloads, tenants.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};

/// `{"SOURCE.r1": {"EventReceivedCount": "5", ...}}` as read.
pub type Snapshot = BTreeMap<String, BTreeMap<String, String>>;

/// GETs `path` from `addr` (HTTP/1.0, the body up to 16 MiB).
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let sock = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|_| format!("`{addr}` is not HOST:PORT with an IP address"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.take(16 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{status}: {}", body.trim()));
    }
    Ok(body.to_string())
}

pub fn parse_snapshot(json: &str) -> Result<Snapshot, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not Flume JSON metrics: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    Ok(obj
        .iter()
        .map(|(k, v)| {
            let values = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(n, x)| {
                            (
                                n.clone(),
                                x.as_str().map_or_else(|| x.to_string(), str::to_string),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (k.clone(), values)
        })
        .collect())
}

/// One table of the dashboard: a title, column names, rows.
#[derive(Debug, PartialEq)]
pub struct Section {
    pub title: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

fn num(s: &Snapshot, key: &str, name: &str) -> Option<f64> {
    s.get(key)?.get(name)?.parse().ok()
}

/// Per-second rate of counter `name` of `key` between two snapshots.
fn rate(prev: Option<&Snapshot>, cur: &Snapshot, key: &str, name: &str, dt: f64) -> String {
    match (prev.and_then(|p| num(p, key, name)), num(cur, key, name)) {
        (Some(a), Some(b)) if dt > 0.0 => fmt_rate((b - a).max(0.0) / dt),
        _ => "-".into(),
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn value(cur: &Snapshot, key: &str, name: &str) -> String {
    cur.get(key)
        .and_then(|m| m.get(name))
        .cloned()
        .unwrap_or_else(|| "-".into())
}

/// Of the components of `kind` (`SOURCE`), the names.
fn names<'a>(cur: &'a Snapshot, kind: &str) -> Vec<(&'a str, &'a str)> {
    let prefix = format!("{kind}.");
    cur.keys()
        .filter_map(|k| k.strip_prefix(&prefix).map(|n| (k.as_str(), n)))
        .collect()
}

/// The dashboard's tables from two snapshots `dt` seconds apart (`prev` none: no rates yet).
pub fn sections(prev: Option<&Snapshot>, cur: &Snapshot, dt: f64) -> Vec<Section> {
    let r = |key: &str, name: &str| rate(prev, cur, key, name, dt);
    let mut out = Vec::new();
    let blocked = |key: &str| {
        let share = match (
            prev.and_then(|p| num(p, key, "ChannelBlockedMicros")),
            num(cur, key, "ChannelBlockedMicros"),
        ) {
            (Some(a), Some(b)) if dt > 0.0 => {
                format!("{:.0}%", ((b - a).max(0.0) / 1e6 / dt * 100.0).min(100.0))
            }
            _ => "-".into(),
        };
        // A wait that is going on: for how long (by this machine's clock).
        match num(cur, key, "ChannelBlockedSince") {
            Some(since) if since > 0.0 => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_millis() as f64);
                format!("{share} {:.0}s", ((now - since) / 1000.0).max(0.0))
            }
            _ => share,
        }
    };
    out.push(Section {
        title: "SOURCES",
        columns: vec![
            "source",
            "in/s",
            "accepted/s",
            "dropped/s",
            "blocked",
            "fails/s",
        ],
        rows: names(cur, "SOURCE")
            .into_iter()
            .map(|(k, n)| {
                vec![
                    n.to_string(),
                    r(k, "EventReceivedCount"),
                    r(k, "EventAcceptedCount"),
                    r(k, "InterceptorDroppedCount"),
                    blocked(k),
                    r(k, "ChannelWriteFail"),
                ]
            })
            .collect(),
    });
    out.push(Section {
        title: "CHANNELS",
        columns: vec!["channel", "put/s", "take/s", "size", "fill"],
        rows: names(cur, "CHANNEL")
            .into_iter()
            .map(|(k, n)| {
                let fill = num(cur, k, "ChannelFillPercentage")
                    .map_or_else(|| "-".into(), |f| format!("{f:.1}%"));
                vec![
                    n.to_string(),
                    r(k, "EventPutSuccessCount"),
                    r(k, "EventTakeSuccessCount"),
                    value(cur, k, "ChannelSize"),
                    fill,
                ]
            })
            .collect(),
    });
    out.push(Section {
        title: "SINKS",
        columns: vec!["sink", "out/s", "failed batches/s", "conn fails", "p99 ms"],
        rows: names(cur, "SINK")
            .into_iter()
            .map(|(k, n)| {
                vec![
                    n.to_string(),
                    r(k, "EventDrainSuccessCount"),
                    r(k, "EventWriteFail"),
                    value(cur, k, "ConnectionFailedCount"),
                    value(cur, k, "DeliveryLatencyP99Millis"),
                ]
            })
            .collect(),
    });
    out.push(Section {
        title: "GUESTS",
        columns: vec![
            "guest",
            "in/s",
            "out/s",
            "faults",
            "reloads",
            "reload fails",
        ],
        rows: names(cur, "WASM")
            .into_iter()
            .map(|(k, n)| {
                vec![
                    n.to_string(),
                    r(k, "EventInCount"),
                    r(k, "EventOutCount"),
                    value(cur, k, "FaultCount"),
                    value(cur, k, "ReloadCount"),
                    value(cur, k, "ReloadFailureCount"),
                ]
            })
            .collect(),
    });
    out.push(Section {
        title: "TENANTS",
        columns: vec!["tenant", "in/s", "routed/s", "dropped/s", "quota hits"],
        rows: names(cur, "TENANT")
            .into_iter()
            .map(|(k, n)| {
                vec![
                    n.to_string(),
                    r(k, "EventReceivedCount"),
                    r(k, "EventRoutedCount"),
                    r(k, "EventDroppedCount"),
                    value(cur, k, "QuotaHitCount"),
                ]
            })
            .collect(),
    });
    out.retain(|s| !s.rows.is_empty());
    out
}

/// Puts the terminal back however `run` ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
    }
}

fn draw(
    term: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
    header: &str,
    status: &str,
    sections: &[Section],
) -> std::io::Result<()> {
    term.draw(|f| {
        let mut constraints = vec![Constraint::Length(2)];
        constraints.extend(
            sections
                .iter()
                .map(|s| Constraint::Length(s.rows.len() as u16 + 3)),
        );
        constraints.push(Constraint::Min(0));
        let areas = Layout::vertical(constraints).split(f.area());
        f.render_widget(
            Paragraph::new(vec![
                Line::styled(header, Style::default().add_modifier(Modifier::BOLD)),
                Line::raw(status),
            ]),
            areas[0],
        );
        for (i, s) in sections.iter().enumerate() {
            let widths: Vec<Constraint> = s
                .columns
                .iter()
                .enumerate()
                .map(|(j, _)| {
                    if j == 0 {
                        Constraint::Min(16)
                    } else {
                        Constraint::Length(17)
                    }
                })
                .collect();
            let table = Table::new(s.rows.iter().map(|r| Row::new(r.clone())), widths)
                .header(
                    Row::new(s.columns.clone())
                        .style(Style::default().add_modifier(Modifier::BOLD)),
                )
                .block(Block::default().borders(Borders::TOP).title(s.title));
            f.render_widget(table, areas[i + 1]);
        }
    })?;
    Ok(())
}

/// Runs the dashboard until `q`, Esc or Ctrl-C.
pub fn run(addr: &str, interval: Duration) -> ExitCode {
    if let Err(e) = enable_raw_mode() {
        eprintln!("sluice top: not a terminal ({e})");
        return ExitCode::from(2);
    }
    let guard = TerminalGuard;
    let mut stdout = std::io::stdout();
    if let Err(e) = execute!(stdout, EnterAlternateScreen) {
        drop(guard);
        eprintln!("sluice top: {e}");
        return ExitCode::from(1);
    }
    let mut term = match Terminal::new(CrosstermBackend::new(stdout)) {
        Ok(t) => t,
        Err(e) => {
            drop(guard);
            eprintln!("sluice top: {e}");
            return ExitCode::from(1);
        }
    };
    let header = format!(
        "sluice top — {addr} — every {:.1} s — q quits",
        interval.as_secs_f64()
    );
    let mut prev: Option<(Snapshot, Instant)> = None;
    let mut last: Vec<Section> = Vec::new();
    loop {
        let fetched = http_get(addr, "/metrics", Duration::from_secs(2))
            .and_then(|body| parse_snapshot(&body));
        let now = Instant::now();
        let status = match fetched {
            Ok(cur) => {
                let dt = prev
                    .as_ref()
                    .map_or(0.0, |(_, t)| now.duration_since(*t).as_secs_f64());
                last = sections(prev.as_ref().map(|(s, _)| s), &cur, dt);
                prev = Some((cur, now));
                format!(
                    "{} components",
                    last.iter().map(|s| s.rows.len()).sum::<usize>()
                )
            }
            Err(e) => format!("cannot read {addr}/metrics: {e} (retrying)"),
        };
        if let Err(e) = draw(&mut term, &header, &status, &last) {
            drop(guard);
            eprintln!("sluice top: {e}");
            return ExitCode::from(1);
        }
        // Keys until the next refresh.
        let deadline = now + interval;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match event::poll(left) {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => return ExitCode::from(1),
            }
            if let Ok(Event::Key(k)) = event::read()
                && k.kind == KeyEventKind::Press
            {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    return ExitCode::SUCCESS;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_fill_and_blocked_share() {
        let a = parse_snapshot(
            r#"{"SOURCE.r1": {"Type": "SOURCE", "EventReceivedCount": "100",
                "EventAcceptedCount": "100", "ChannelBlockedMicros": "0"},
                "CHANNEL.c1": {"ChannelFillPercentage": "12.5", "ChannelSize": "5",
                "EventPutSuccessCount": "100", "EventTakeSuccessCount": "0"}}"#,
        )
        .expect("json");
        let b = parse_snapshot(
            r#"{"SOURCE.r1": {"Type": "SOURCE", "EventReceivedCount": "2100",
                "EventAcceptedCount": "30100", "ChannelBlockedMicros": "1000000"},
                "CHANNEL.c1": {"ChannelFillPercentage": "50.0", "ChannelSize": "20",
                "EventPutSuccessCount": "2100", "EventTakeSuccessCount": "500"}}"#,
        )
        .expect("json");
        let s = sections(Some(&a), &b, 2.0);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].rows[0], ["r1", "1000", "15.0k", "-", "50%", "-"]);
        assert_eq!(s[1].rows[0], ["c1", "1000", "250", "20", "50.0%"]);
        let first = sections(None, &b, 0.0);
        assert_eq!(first[0].rows[0][1], "-");
    }
}
