//! Logging setup: `tracing` to stderr, human or JSON lines, `RUST_LOG`
//! winning over the configured level.
//!
//! Under journald (stderr is the stream named by `JOURNAL_STREAM`, as systemd
//! sets it for `StandardError=journal`), every line starts with its syslog
//! priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug/trace), which
//! journald strips and records, so `journalctl -p warning` shows warnings and
//! errors; timestamps and colours are left to the journal. Elsewhere the
//! lines are plain, with a timestamp.
use crate::config::LogFormat;
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The syslog priority of a tracing level.
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Whether stderr is the journal stream systemd announced in `JOURNAL_STREAM`
/// (`<device>:<inode>` of the stream; it must match stderr, or stderr was
/// redirected elsewhere by a wrapper).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Wraps an event format with a syslog priority prefix.
struct Prioritised<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritised<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Sets up logging once per process (later calls do nothing).
pub fn init(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::format as fmtf;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = stderr_is_journal();
    let ansi = !journal && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match (format, journal) {
        (LogFormat::Json, true) => builder
            .fmt_fields(fmtf::JsonFields::new())
            .event_format(Prioritised(fmtf().json().flatten_event(true)))
            .try_init(),
        (LogFormat::Json, false) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Human, true) => builder
            .event_format(Prioritised(fmtf().without_time()))
            .try_init(),
        (LogFormat::Human, false) => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
    }
}
