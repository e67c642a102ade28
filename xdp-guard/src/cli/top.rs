//! `xdp-guard top`: the busiest SYN sources, live.
//!
//! [`build_view`] turns API data into a [`TopView`] (header fields and table rows as text);
//! [`render_text`] prints it for `--once`, and [`draw`] lays it out with ratatui for the
//! full-screen view. Both are pure, so tests need neither a server nor a terminal.

use std::{
    io::IsTerminal,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use clap::ValueEnum;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ipnet::IpNet;
use ratatui::{
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState},
};

use super::{
    CliError, Client, TOP_BLOCK_TTL, TopArgs,
    format::{Align, rate, remaining, table},
    wire::{Offender, Stats},
};
use crate::model;

/// Order of the offender table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// Current SYN/s.
    #[default]
    Rate,
    /// SYNs seen in total.
    Total,
    /// SYNs dropped (or counted as would-be drops in monitor mode).
    Dropped,
}

impl SortKey {
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Rate => "rate",
            SortKey::Total => "total",
            SortKey::Dropped => "dropped",
        }
    }

    /// The `s` key: rate -> total -> dropped -> rate.
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Rate => SortKey::Total,
            SortKey::Total => SortKey::Dropped,
            SortKey::Dropped => SortKey::Rate,
        }
    }

    /// How many offenders to ask for to show `limit` in this order. The API returns the
    /// highest rates first, so another order looks at a wider set and keeps its own top.
    fn fetch_limit(self, limit: usize) -> usize {
        match self {
            SortKey::Rate => limit,
            SortKey::Total | SortKey::Dropped => limit.saturating_mul(10).clamp(limit, 10_000),
        }
    }
}

/// One offender as the table shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct OffenderRow {
    pub source: IpNet,
    /// A host prefix shows as its address (`192.0.2.7`), anything else as the prefix.
    pub address: String,
    pub syn_rate: String,
    pub total: String,
    pub dropped: String,
    /// `-`, or `yes, 9m 58s` / `yes, permanent`.
    pub blocked: String,
    /// SYN/s history as a sparkline.
    pub history: String,
    pub is_blocked: bool,
}

/// One frame of `top`, as text.
#[derive(Clone, Debug, PartialEq)]
pub struct TopView {
    /// Header lines, each a list of `(label, value)`.
    pub header: Vec<Vec<(&'static str, String)>>,
    pub attack: bool,
    pub sort: SortKey,
    pub rows: Vec<OffenderRow>,
}

/// Table titles, for the text and the terminal views alike.
pub const COLUMNS: [(&str, Align); 6] = [
    ("ADDRESS", Align::Left),
    ("SYN/S", Align::Right),
    ("TOTAL", Align::Right),
    ("DROPPED", Align::Right),
    ("BLOCKED", Align::Left),
    ("HISTORY", Align::Left),
];

/// Sorts `offenders` by `key`, largest first; ties by address so frames do not flicker.
pub fn sort_offenders(offenders: &mut [Offender], key: SortKey) {
    offenders.sort_by(|a, b| {
        let primary = match key {
            SortKey::Rate => b.syn_rate.total_cmp(&a.syn_rate),
            SortKey::Total => b.syns.cmp(&a.syns),
            SortKey::Dropped => b.dropped.cmp(&a.dropped),
        };
        primary
            .then(b.syn_rate.total_cmp(&a.syn_rate))
            .then(a.source.cmp(&b.source))
    });
}

/// The view of `stats` (none yet: dashes) and the top `limit` of `offenders` by `sort`.
pub fn build_view(
    stats: Option<&Stats>,
    offenders: &[Offender],
    sort: SortKey,
    limit: usize,
    now_ms: u64,
) -> TopView {
    let dash = || "-".to_owned();
    let header = vec![
        vec![
            (
                "interface",
                stats.map(|s| s.interface.clone()).unwrap_or_else(dash),
            ),
            (
                "XDP",
                stats.map(|s| s.xdp_mode.clone()).unwrap_or_else(dash),
            ),
            (
                "mode",
                stats
                    .map(|s| if s.enforce { "enforce" } else { "monitor" }.to_owned())
                    .unwrap_or_else(dash),
            ),
            (
                "attack",
                stats
                    .map(|s| {
                        let state = s.attack_state.as_str();
                        if s.spoof_guard {
                            format!("{state} (spoof guard on)")
                        } else {
                            state.to_owned()
                        }
                    })
                    .unwrap_or_else(dash),
            ),
            (
                "sysctl",
                stats.map(|s| s.sysctl_profile.clone()).unwrap_or_else(dash),
            ),
            (
                "blocklist",
                stats
                    .map(|s| s.blocklist_size.to_string())
                    .unwrap_or_else(dash),
            ),
        ],
        vec![
            (
                "packets/s",
                stats
                    .map(|s| rate(s.rates.packets_per_sec))
                    .unwrap_or_else(dash),
            ),
            (
                "SYN/s",
                stats
                    .map(|s| rate(s.rates.syns_per_sec))
                    .unwrap_or_else(dash),
            ),
            (
                "drops/s",
                stats
                    .map(|s| rate(s.rates.dropped_per_sec))
                    .unwrap_or_else(dash),
            ),
            (
                "sources",
                stats
                    .map(|s| s.tracked_sources.to_string())
                    .unwrap_or_else(dash),
            ),
            ("sort", sort.name().to_owned()),
        ],
    ];
    let mut sorted = offenders.to_vec();
    sort_offenders(&mut sorted, sort);
    sorted.truncate(limit);
    let rows = sorted
        .iter()
        .map(|o| OffenderRow {
            source: o.source,
            address: address(&o.source),
            // A blocked source is dropped before SYN accounting: its counters stand still
            // and its traffic shows only in the header's drops/s. "0.0" would say it stopped.
            syn_rate: if o.blocked {
                "-".to_owned()
            } else {
                rate(o.syn_rate)
            },
            total: o.syns.to_string(),
            dropped: o.dropped.to_string(),
            blocked: match (o.blocked, o.blocked_until_ms) {
                (false, _) => "-".to_owned(),
                (true, None) => "yes, permanent".to_owned(),
                (true, until) => format!("yes, {}", remaining(until, now_ms)),
            },
            history: sparkline(&o.history, SPARK_WIDTH),
            is_blocked: o.blocked,
        })
        .collect();
    TopView {
        header,
        attack: stats.is_some_and(|s| s.attack_state != model::AttackState::None),
        sort,
        rows,
    }
}

fn address(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Samples shown in the history column (the controller keeps 30).
pub const SPARK_WIDTH: usize = 30;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` samples as block characters, scaled to their own maximum (the shape of
/// a source's rate, not its size; the SYN/S column has the size).
pub fn sparkline(history: &[f32], width: usize) -> String {
    let samples = &history[history.len().saturating_sub(width)..];
    let clean = |v: f32| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let max = samples.iter().copied().map(clean).fold(0.0_f32, f32::max);
    samples
        .iter()
        .map(|&v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                let level = (clean(v) / max * (BARS.len() - 1) as f32).round() as usize;
                BARS[level.min(BARS.len() - 1)]
            }
        })
        .collect()
}

fn header_line(fields: &[(&'static str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

fn row_cells(r: &OffenderRow) -> Vec<String> {
    vec![
        r.address.clone(),
        r.syn_rate.clone(),
        r.total.clone(),
        r.dropped.clone(),
        r.blocked.clone(),
        r.history.clone(),
    ]
}

/// `top --once`: the header lines, a blank line and the table, as plain text.
pub fn render_text(view: &TopView) -> String {
    let mut out = String::new();
    for fields in &view.header {
        out.push_str(&header_line(fields));
        out.push('\n');
    }
    out.push('\n');
    if view.rows.is_empty() {
        out.push_str("no tracked sources\n");
    } else {
        let rows: Vec<Vec<String>> = view.rows.iter().map(row_cells).collect();
        out.push_str(&table(&COLUMNS, &rows));
    }
    out
}

const KEYS: &str = "q quit  s sort  ↑/↓ j/k select  b block 10m  u unblock  r refresh";

/// Lays `view` out on a ratatui frame: header, offender table (the `state` selection
/// highlighted), status line and key help.
pub fn draw(f: &mut ratatui::Frame, view: &TopView, state: &mut TableState, status: &str) {
    let [header_area, table_area, status_area, keys_area] = Layout::vertical([
        Constraint::Length(view.header.len() as u16 + 2),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());

    let label = Style::default().add_modifier(Modifier::DIM);
    let value = Style::default().add_modifier(Modifier::BOLD);
    let lines: Vec<Line> = view
        .header
        .iter()
        .map(|fields| {
            let mut spans = Vec::new();
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    spans.push(Span::raw("  "));
                }
                spans.push(Span::styled(format!("{k}: "), label));
                let style = if *k == "attack" && view.attack {
                    value.fg(Color::Red)
                } else {
                    value
                };
                spans.push(Span::styled(v.clone(), style));
            }
            Line::from(spans)
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" xdp-guard top "),
        ),
        header_area,
    );

    // Column widths from the content, so IPv6 prefixes fit and IPv4 tables stay narrow.
    let mut widths: Vec<u16> = COLUMNS
        .iter()
        .map(|(h, _)| h.chars().count() as u16)
        .collect();
    for r in &view.rows {
        for (w, cell) in widths.iter_mut().zip(row_cells(r)) {
            *w = (*w).max(cell.chars().count() as u16);
        }
    }
    let constraints: Vec<Constraint> = widths.iter().map(|w| Constraint::Length(*w)).collect();
    let cell = |text: String, align: Align| match align {
        Align::Left => Cell::from(text),
        Align::Right => Cell::from(Line::from(text).right_aligned()),
    };
    let header = Row::new(
        COLUMNS
            .iter()
            .map(|(h, align)| cell((*h).to_owned(), *align)),
    )
    .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows = view.rows.iter().map(|r| {
        let cells = row_cells(r)
            .into_iter()
            .zip(COLUMNS)
            .map(|(text, (_, align))| cell(text, align));
        let row = Row::new(cells);
        if r.is_blocked {
            row.style(Style::default().fg(Color::Red))
        } else {
            row
        }
    });
    let title = format!(" offenders by {} ({}) ", view.sort.name(), view.rows.len());
    let table = Table::new(rows, constraints)
        .header(header)
        .column_spacing(2)
        .block(Block::default().borders(Borders::ALL).title(title))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    f.render_stateful_widget(table, table_area, state);

    f.render_widget(Paragraph::new(status.to_owned()), status_area);
    f.render_widget(
        Paragraph::new(KEYS).style(Style::default().add_modifier(Modifier::DIM)),
        keys_area,
    );
}

/// `xdp-guard top`.
pub(super) async fn run(client: &Client, args: &TopArgs) -> Result<ExitCode, CliError> {
    let limit = args.limit as usize;
    if args.once {
        return once(client, args, limit).await;
    }
    if !std::io::stdout().is_terminal() {
        return Err(CliError::NotATerminal);
    }
    // Fail before taking over the screen if the token is unreadable or the daemon is down.
    let first = fetch(client, args.sort, limit).await?;

    let terminal = TerminalGuard::enter()?;
    let keys = KeyReader::spawn();
    let mut app = App::new(args.sort, limit);
    app.update(first);
    let result = app.run(terminal, keys, client, args.interval).await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn once(client: &Client, args: &TopArgs, limit: usize) -> Result<ExitCode, CliError> {
    if args.json {
        let path = format!("/v1/offenders?limit={limit}");
        let (stats, offenders) = tokio::join!(client.get_raw("/v1/stats"), client.get_raw(&path));
        let parse = |url: &str, body: &str| {
            serde_json::from_str::<serde_json::Value>(body).map_err(|e| CliError::Decode {
                url: format!("{}{url}", client.base()),
                reason: e.to_string(),
            })
        };
        let stats = parse("/v1/stats", &stats?)?;
        let mut offenders = parse(&path, &offenders?)?;
        let body = serde_json::json!({
            "stats": stats,
            "offenders": offenders
                .get_mut("offenders")
                .map(serde_json::Value::take)
                .unwrap_or_default(),
        });
        return super::emit(&format!("{body:#}\n"));
    }
    let (stats, offenders) = fetch(client, args.sort, limit).await?;
    let view = build_view(Some(&stats), &offenders, args.sort, limit, model::now_ms());
    super::emit(&render_text(&view))
}

async fn fetch(
    client: &Client,
    sort: SortKey,
    limit: usize,
) -> Result<(Stats, Vec<Offender>), CliError> {
    let (stats, offenders) =
        tokio::join!(client.stats(), client.offenders(sort.fetch_limit(limit)));
    Ok((stats?, offenders?))
}

/// Raw mode and the alternate screen for as long as it lives; the terminal is restored on
/// drop (normal exit and errors) and, through ratatui's panic hook, on panic.
struct TerminalGuard(ratatui::DefaultTerminal);

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard, CliError> {
        match ratatui::try_init() {
            Ok(t) => Ok(TerminalGuard(t)),
            Err(e) => {
                // Raw mode may be on even though the alternate screen failed.
                let _ = ratatui::try_restore();
                Err(CliError::Terminal(e))
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.0.show_cursor();
        let _ = ratatui::try_restore();
    }
}

/// Terminal events from a thread of their own (crossterm's reads block), until the receiver
/// is dropped.
struct KeyReader {
    events: tokio::sync::mpsc::Receiver<Event>,
    stop: Arc<AtomicBool>,
}

impl KeyReader {
    fn spawn() -> KeyReader {
        let (tx, events) = tokio::sync::mpsc::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match event::poll(Duration::from_millis(100)) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(_) => break,
                }
                match event::read() {
                    Ok(ev) => {
                        if tx.blocking_send(ev).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        KeyReader { events, stop }
    }
}

impl Drop for KeyReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

enum Action {
    Continue,
    Refresh,
    Quit,
}

struct App {
    sort: SortKey,
    limit: usize,
    stats: Option<Stats>,
    offenders: Vec<Offender>,
    /// The selected source, followed across refreshes and re-sorts.
    selected: Option<IpNet>,
    table: TableState,
    status: String,
}

impl App {
    fn new(sort: SortKey, limit: usize) -> App {
        App {
            sort,
            limit,
            stats: None,
            offenders: Vec::new(),
            selected: None,
            table: TableState::default(),
            status: "refreshing every interval; select a row and press b to block it".into(),
        }
    }

    fn view(&self) -> TopView {
        build_view(
            self.stats.as_ref(),
            &self.offenders,
            self.sort,
            self.limit,
            model::now_ms(),
        )
    }

    fn update(&mut self, (stats, offenders): (Stats, Vec<Offender>)) {
        self.stats = Some(stats);
        self.offenders = offenders;
        self.reselect();
    }

    /// Puts the table selection on the selected source, or on the row where it was if that
    /// source has gone.
    fn reselect(&mut self) {
        let rows = self.view().rows;
        let found = self
            .selected
            .and_then(|s| rows.iter().position(|r| r.source == s));
        let index = match (found, self.table.selected()) {
            (Some(i), _) => Some(i),
            (None, _) if rows.is_empty() => None,
            (None, Some(i)) => Some(i.min(rows.len() - 1)),
            (None, None) => None,
        };
        self.table.select(index);
        self.selected = index.map(|i| rows[i].source);
    }

    fn step(&mut self, down: bool) {
        let rows = self.view().rows;
        if rows.is_empty() {
            return;
        }
        let index = match (self.table.selected(), down) {
            (None, _) => 0,
            (Some(i), true) => (i + 1).min(rows.len() - 1),
            (Some(i), false) => i.saturating_sub(1),
        };
        self.table.select(Some(index));
        self.selected = Some(rows[index].source);
    }

    async fn key(&mut self, key: KeyEvent, client: &Client) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.status = format!("sorted by {}", self.sort.name());
                self.reselect();
                Action::Refresh
            }
            KeyCode::Char('r') => Action::Refresh,
            KeyCode::Down | KeyCode::Char('j') => {
                self.step(true);
                Action::Continue
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.step(false);
                Action::Continue
            }
            KeyCode::Char('b') => {
                let Some(source) = self.selected else {
                    self.status = "select a row with ↑/↓ first".into();
                    return Action::Continue;
                };
                let cidr = source.to_string();
                self.status = match client
                    .block(
                        &cidr,
                        Some(TOP_BLOCK_TTL),
                        Some("blocked from xdp-guard top"),
                    )
                    .await
                {
                    Ok(b) => format!(
                        "blocked {} for {}",
                        b.cidr,
                        remaining(b.expires_at_ms, model::now_ms())
                    ),
                    Err(e) => format!("error: {e}"),
                };
                Action::Refresh
            }
            KeyCode::Char('u') => {
                let Some(source) = self.selected else {
                    self.status = "select a row with ↑/↓ first".into();
                    return Action::Continue;
                };
                self.status = match client.unblock(&source.to_string()).await {
                    Ok(()) => format!("unblocked {source}"),
                    Err(e) => format!("error: {e}"),
                };
                Action::Refresh
            }
            _ => Action::Continue,
        }
    }

    async fn refresh(&mut self, client: &Client) {
        match fetch(client, self.sort, self.limit).await {
            Ok(data) => self.update(data),
            Err(e) => self.status = format!("error: {e}"),
        }
    }

    async fn run(
        &mut self,
        mut terminal: TerminalGuard,
        mut keys: KeyReader,
        client: &Client,
        interval: Duration,
    ) -> Result<(), CliError> {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the data for it was fetched before the screen.
        ticker.tick().await;
        loop {
            let view = self.view();
            let status = self.status.clone();
            terminal
                .0
                .draw(|f| draw(f, &view, &mut self.table, &status))
                .map_err(CliError::Terminal)?;
            tokio::select! {
                _ = ticker.tick() => self.refresh(client).await,
                ev = keys.events.recv() => match ev {
                    None => return Ok(()),
                    Some(Event::Key(key)) => match self.key(key, client).await {
                        Action::Quit => return Ok(()),
                        Action::Refresh => {
                            self.refresh(client).await;
                            ticker.reset();
                        }
                        Action::Continue => {}
                    },
                    // Resizes and the rest: just redraw.
                    Some(_) => {}
                },
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::{cli::wire::Rates, model::AttackState};

    const NOW: u64 = 1_700_000_000_000;

    fn stats() -> Stats {
        Stats {
            interface: "eth0".into(),
            xdp_mode: "native".into(),
            enforce: true,
            counters: BTreeMap::new(),
            rates: Rates {
                packets_per_sec: 12_345.0,
                syns_per_sec: 4_321.5,
                dropped_per_sec: 3_000.0,
                new_sources_per_sec: 2.0,
            },
            blocklist_size: 3,
            allowlist_size: 1,
            tracked_sources: 57,
            attack_state: AttackState::PerSource,
            spoof_guard: false,
            sysctl_profile: "under_attack".into(),
            syn_recv: 12,
            tick_duration_ms: 0.4,
            ticks: 100,
            uptime_secs: 3_600,
        }
    }

    fn offender(source: &str, rate: f64, syns: u64, dropped: u64) -> Offender {
        Offender {
            source: source.parse().unwrap(),
            syn_rate: rate,
            syns,
            dropped,
            blocked: false,
            blocked_until_ms: None,
            history: vec![0.0, rate as f32 / 2.0, rate as f32],
        }
    }

    fn offenders() -> Vec<Offender> {
        let mut blocked = offender("198.51.100.0/24", 50.0, 9_000, 8_000);
        blocked.blocked = true;
        blocked.blocked_until_ms = Some(NOW + 598_000);
        vec![
            offender("192.0.2.7/32", 900.0, 1_000, 10),
            blocked,
            offender("2001:db8::/64", 10.0, 50_000, 0),
        ]
    }

    #[test]
    fn sorts_cycle_and_order_rows() {
        assert_eq!(SortKey::Rate.next(), SortKey::Total);
        assert_eq!(SortKey::Total.next(), SortKey::Dropped);
        assert_eq!(SortKey::Dropped.next(), SortKey::Rate);
        let order = |sort| -> Vec<String> {
            build_view(None, &offenders(), sort, 10, NOW)
                .rows
                .into_iter()
                .map(|r| r.address)
                .collect()
        };
        assert_eq!(
            order(SortKey::Rate),
            ["192.0.2.7", "198.51.100.0/24", "2001:db8::/64"]
        );
        assert_eq!(
            order(SortKey::Total),
            ["2001:db8::/64", "198.51.100.0/24", "192.0.2.7"]
        );
        assert_eq!(
            order(SortKey::Dropped),
            ["198.51.100.0/24", "192.0.2.7", "2001:db8::/64"]
        );
        assert_eq!(
            build_view(None, &offenders(), SortKey::Rate, 1, NOW)
                .rows
                .len(),
            1
        );
        assert_eq!(SortKey::Total.fetch_limit(20), 200);
        assert_eq!(SortKey::Rate.fetch_limit(20), 20);
    }

    #[test]
    fn rows_show_blocks_and_history() {
        let view = build_view(Some(&stats()), &offenders(), SortKey::Rate, 10, NOW);
        let blocked = &view.rows[1];
        assert_eq!(blocked.blocked, "yes, 9m 58s");
        assert!(blocked.is_blocked);
        assert_eq!(blocked.syn_rate, "-", "not counted while blocked");
        assert_eq!(view.rows[0].blocked, "-");
        assert_eq!(view.rows[0].syn_rate, "900");
        assert_eq!(view.rows[2].syn_rate, "10.0");
        assert_eq!(view.rows[0].history, "▁▅█");
        assert!(view.attack);
    }

    #[test]
    fn sparkline_scales_to_its_maximum() {
        assert_eq!(sparkline(&[], 10), "");
        assert_eq!(sparkline(&[0.0, 0.0], 10), "▁▁");
        assert_eq!(
            sparkline(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 10),
            "▁▂▃▄▅▆▇█"
        );
        // Only the last `width` samples; junk values count as zero.
        assert_eq!(sparkline(&[100.0, f32::NAN, -1.0, 2.0], 3), "▁▁█");
    }

    #[test]
    fn header_says_when_the_spoof_guard_is_on() {
        let guarded = Stats {
            attack_state: AttackState::Spoofed,
            spoof_guard: true,
            ..stats()
        };
        let text = render_text(&build_view(Some(&guarded), &[], SortKey::Rate, 10, NOW));
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.contains("attack: spoofed (spoof guard on)")),
            "{text}"
        );
    }

    #[test]
    fn text_frame_has_header_and_table_without_escapes() {
        let view = build_view(Some(&stats()), &offenders(), SortKey::Rate, 10, NOW);
        let text = render_text(&view);
        assert!(!text.contains('\x1b'), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "interface: eth0  XDP: native  mode: enforce  attack: per_source  \
             sysctl: under_attack  blocklist: 3"
        );
        assert_eq!(
            lines[1],
            "packets/s: 12345  SYN/s: 4322  drops/s: 3000  sources: 57  sort: rate"
        );
        assert_eq!(lines[2], "");
        assert!(lines[3].starts_with("ADDRESS"), "{text}");
        assert!(lines[4].starts_with("192.0.2.7 "), "{text}");
        assert!(lines[5].contains("yes, 9m 58s"), "{text}");
        // Numbers are right-aligned under their titles.
        let col = lines[3].find("SYN/S").unwrap() + "SYN/S".len();
        assert_eq!(
            &lines[4][..col],
            &format!("{:<15}  {:>5}", "192.0.2.7", "900")[..col]
        );

        let empty = render_text(&build_view(None, &[], SortKey::Total, 10, NOW));
        assert!(empty.starts_with("interface: -  XDP: -"), "{empty}");
        assert!(empty.contains("sort: total"), "{empty}");
        assert!(empty.ends_with("no tracked sources\n"), "{empty}");
    }

    fn screen(terminal: &Terminal<TestBackend>) -> Vec<String> {
        let buffer = terminal.backend().buffer();
        let width = buffer.area.width as usize;
        buffer
            .content()
            .chunks(width)
            .map(|row| row.iter().map(|c| c.symbol()).collect())
            .collect()
    }

    #[test]
    fn terminal_frame_shows_header_rows_and_status() {
        let view = build_view(Some(&stats()), &offenders(), SortKey::Rate, 10, NOW);
        let mut terminal = Terminal::new(TestBackend::new(140, 20)).unwrap();
        let mut state = TableState::default().with_selected(Some(1));
        terminal
            .draw(|f| draw(f, &view, &mut state, "blocked 198.51.100.0/24 for 10m"))
            .unwrap();
        let lines = screen(&terminal);
        let all = lines.join("\n");
        for needle in [
            "packets/s: 12345",
            "drops/s: 3000",
            "SYN/s: 4322",
            "attack: per_source",
            "sysctl: under_attack",
            "XDP: native",
            "blocklist: 3",
            "ADDRESS",
            "HISTORY",
            "192.0.2.7",
            "2001:db8::/64",
            "yes, 9m 58s",
            "▁▅█",
            "blocked 198.51.100.0/24 for 10m",
            "q quit",
        ] {
            assert!(all.contains(needle), "{needle:?} missing from\n{all}");
        }
        // The selected row carries the highlight symbol.
        let selected = lines
            .iter()
            .find(|l| l.contains("198.51.100.0/24 "))
            .unwrap();
        assert!(selected.contains("> 198.51.100.0/24"), "{selected}");
    }
}
