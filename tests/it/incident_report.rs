//! `certfed incident report ID --html FILE` as an operator runs it, then the
//! page in a real headless Chromium (Debian's package): it renders offline
//! with no console error or refused load, the screenshot shows the timeline
//! chart (its line colours in the chart area), and partner text that looks
//! like markup stays text. In CI a missing Chromium fails the test; locally it
//! is skipped with a loud message.
use crate::common::*;
use certfed::app::report::{PARTNERS_COLOUR, SEVERITY_COLOUR};
use certfed::proto::v1::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_certfed");
const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        let found = std::env::var_os("PATH").map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        });
        if let Some(Some(f)) = found {
            return Some(f);
        }
    }
    None
}

/// Runs Chromium headless with `args` on `page`, bounded in time.
pub(crate) fn browse(browser: &Path, profile: &Path, page: &Path, args: &[&str]) -> Output {
    let child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Read both pipes while waiting (a full pipe would stall the browser).
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.expect("chromium output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("chromium did not finish within 120 s");
        }
    }
}

/// Console messages, script errors and refused loads in Chromium's log.
pub(crate) fn console_problems(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Refused to"))
        .collect()
}

pub(crate) fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// Pixels of the screenshot within `tol` of `colour`, counted in rows `rows`.
pub(crate) fn count(
    png_path: &Path,
    colour: [u8; 3],
    rows: std::ops::Range<u32>,
    tol: i32,
) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let mut n = 0;
    for y in rows.start..rows.end.min(info.height) {
        for x in 0..info.width {
            let i = ((y * info.width + x) as usize) * channels;
            let p = &buf[i..i + 3];
            if (0..3).all(|k| (i32::from(p[k]) - i32::from(colour[k])).abs() <= tol) {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_renders_in_a_real_browser_with_the_chart() {
    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed: .ci/run installs it (apt-get install -y chromium)");
        }
        eprintln!(
            "\n*** SKIPPED the_report_renders_in_a_real_browser_with_the_chart: no chromium on PATH (apt-get install -y chromium) ***\n"
        );
        return;
    };
    let fed = Fed::line();
    let nodes = vec![fed.start(0).await, fed.start(1).await];
    let mut a = fed.operator(0).await;
    let mut alert = green_alert("Grid <script>document.title='pwned'</script> \"wiper\"");
    alert.severity = Severity::Medium as i32;
    let incident = a
        .publish_alert(PublishAlertRequest {
            alert: Some(alert),
            open_incident: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(arrives(&fed, 1, &incident, WAIT).await);
    fed.operator(1)
        .await
        .report_sighting(ReportSightingRequest {
            sighting: Some(Sighting {
                incident_id: incident.clone(),
                country: "PL".into(),
                sector: Nis2Sector::Transport as i32,
                severity: Severity::Critical as i32,
                count: 3,
                note: "<img src=x onerror=alert(1)>".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            fed.operator(0)
                .await
                .get_situation(GetSituationRequest {
                    incident_id: incident.clone(),
                })
                .await
                .is_ok_and(|s| s.into_inner().contributions == 2)
        })
        .await
    );

    // The operator's command writes the page.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let (pki_ca, crt, key) = (
        fed.pki.ca_path(),
        fed.pki.path("operator.crt"),
        fed.pki.path("operator.key"),
    );
    let addr = fed.addr(0);
    let page2 = page.clone();
    let inc = incident.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["incident", "report", &inc, "--html"])
            .arg(&page2)
            .args(["--node", &addr, "--ca"])
            .arg(pki_ca)
            .arg("--cert")
            .arg(crt)
            .arg("--key")
            .arg(key)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg") && html.contains("&lt;script&gt;"));
    for n in nodes {
        n.shutdown().await.unwrap();
    }

    let profile = tempfile::tempdir().unwrap();
    // The DOM as rendered, and the console: no error, nothing refused.
    let dom = browse(
        &browser,
        profile.path(),
        &page,
        &["--enable-logging=stderr", "--v=0", "--dump-dom"],
    );
    let (dom_text, log) = (
        String::from_utf8_lossy(&dom.stdout),
        String::from_utf8_lossy(&dom.stderr),
    );
    assert!(dom.status.success(), "{log}");
    assert!(dom_text.contains("id=\"timeline\""), "{dom_text}");
    assert!(!dom_text.contains("pwned</title>"), "partner markup ran");
    assert!(
        !dom_text.contains("<img"),
        "partner markup became an element"
    );
    let bad = console_problems(&log);
    assert!(bad.is_empty(), "console errors: {bad:#?}");
    // The console check can fail: a page with an inline script and a remote
    // image under the report's own policy is caught.
    let control = dir.path().join("control.html");
    let csp = html
        .lines()
        .find(|l| l.contains("Content-Security-Policy"))
        .expect("the report sets a Content-Security-Policy");
    std::fs::write(
        &control,
        format!(
            "<!DOCTYPE html><html><head>{csp}</head><body><script>console.error('x')</script><img src=\"http://192.0.2.1/a.png\"></body></html>"
        ),
    )
    .unwrap();
    let c = browse(
        &browser,
        profile.path(),
        &control,
        &["--enable-logging=stderr", "--v=0", "--dump-dom"],
    );
    let control_log = String::from_utf8_lossy(&c.stderr);
    assert!(
        console_problems(&control_log).len() >= 2,
        "the console check missed a blocked script and image: {control_log}"
    );

    // The screenshot shows the chart: its two lines, in the chart area.
    let shot = dir.path().join("out.png");
    let s = browse(
        &browser,
        profile.path(),
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&s.stderr)
    );
    let red = count(&shot, rgb(SEVERITY_COLOUR), 150..700, 12);
    let blue = count(&shot, rgb(PARTNERS_COLOUR), 150..700, 12);
    assert!(red > 500, "severity line: {red} pixels");
    assert!(blue > 300, "partners line: {blue} pixels");
    // Above the chart there is neither colour in bulk (the chart is where it should be).
    assert!(count(&shot, rgb(SEVERITY_COLOUR), 0..120, 12) < 50);
}
