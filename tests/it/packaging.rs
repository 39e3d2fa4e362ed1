//! The Debian package's example configuration (`deploy/debian/certfed.toml`, installed
//! as /etc/certfed/certfed.toml) loads with the real configuration loader, once its
//! /etc/certfed and /var/lib/certfed paths point at real files from a fresh test PKI;
//! the packaged shell completions and man pages are what the binary generates; the
//! unit checks the file before a reload signals the node; purge leaves no file owned
//! by the vanished certfed user.
use certfed::app::localfed::Pki;
use certfed::config::Config;
use certfed::pki::{new_signing_key, write_public};
use std::path::{Path, PathBuf};

const EXAMPLE: &str = include_str!("../../deploy/debian/certfed.toml");
/// The placeholder member id the example uses for this node.
const NODE_ID: &str = "cert-example";
/// The placeholder partner in the commented-out [[peers]] / [[members]] blocks.
const PARTNER_ID: &str = "cert-partner";

/// A fresh PKI holding every file the example names under /etc/certfed/, and a state
/// folder standing in for /var/lib/certfed.
struct Fixture {
    pki: Pki,
    state: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let pki = Pki::new(); // ca.crt
        pki.node(NODE_ID); // cert-example.crt/.key/.sign.key/.sign.pub
        let next = time::OffsetDateTime::now_utc() + time::Duration::days(7);
        let crl = pki.ca.crl(&[], 1, next).unwrap();
        write_public(&pki.path("ca.crl"), &crl, false).unwrap();
        Fixture {
            pki,
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// `text` with /etc/certfed/ and /var/lib/certfed replaced by the fixture's folders.
    fn rewrite(&self, text: &str) -> String {
        let etc = format!("{}/", self.pki.dir.path().display());
        let state = self.state.path().join("certfed");
        text.replace("/etc/certfed/", &etc)
            .replace("\"/var/lib/certfed\"", &format!("\"{}\"", state.display()))
    }

    /// Writes `text` (rewritten) next to the keys and loads it.
    fn load(&self, text: &str) -> Result<Config, certfed::config::ConfigError> {
        let path = self.pki.path("certfed.toml");
        std::fs::write(&path, self.rewrite(text)).unwrap();
        Config::load(&path)
    }
}

/// Quoted absolute paths in the example: every one must be under /etc/certfed/ (keys,
/// certificates) or be /var/lib/certfed (state), so the rewrite above covers them all.
fn quoted_paths(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split('"').skip(1).step_by(2))
        .filter(|s| s.starts_with('/'))
        .collect()
}

/// The example with its commented-out configuration lines (`#[[peers]]`, `#id = …`:
/// a `#` directly followed by TOML, unlike the `# ` of explanations) made live.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_uses_production_paths() {
    let paths = quoted_paths(EXAMPLE);
    assert!(
        paths.len() >= 7,
        "expected key/cert/state paths, got {paths:?}"
    );
    for p in &paths {
        assert!(
            p.starts_with("/etc/certfed/") || *p == "/var/lib/certfed",
            "{p}: keys and certificates belong under /etc/certfed/, state in /var/lib/certfed"
        );
    }
    for p in quoted_paths(&uncommented(EXAMPLE)) {
        assert!(
            p.starts_with("/etc/certfed/") || p == "/var/lib/certfed",
            "{p}"
        );
    }
}

#[test]
fn example_config_loads_with_a_real_pki() {
    let fx = Fixture::new();
    let cfg = fx
        .load(EXAMPLE)
        .unwrap_or_else(|e| panic!("deploy/debian/certfed.toml does not load: {e}"));
    let etc = fx.pki.dir.path().canonicalize().unwrap();
    let under_etc = |p: &Path| p.canonicalize().unwrap().starts_with(&etc);

    assert_eq!(cfg.node.id, NODE_ID);
    assert!(under_etc(&cfg.node.signing_key));
    assert!(under_etc(&cfg.tls.ca) && under_etc(&cfg.tls.cert) && under_etc(&cfg.tls.key));
    assert_eq!(cfg.tls.crls.len(), 1);
    assert!(under_etc(&cfg.tls.crls[0]));
    assert_eq!(cfg.storage.dir, fx.state.path().join("certfed"));
    assert_eq!(cfg.metrics.listen.as_deref(), Some("127.0.0.1:9700"));
    assert!(cfg.listen_addr().is_ok());
    assert!(
        cfg.peers.is_empty(),
        "peers are placeholders, commented out"
    );
    let members: Vec<&str> = cfg.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(members, [NODE_ID], "the node pins its own signing key");
    // tls.cert is the fresh PKI's node certificate, not some file that happened to exist.
    let cert = std::fs::read_to_string(&cfg.tls.cert).unwrap();
    assert!(certfed::pki::issued_by(&cert, fx.pki.ca.cert_pem()).unwrap());
}

#[test]
fn example_placeholders_are_valid_once_uncommented() {
    let fx = Fixture::new();
    let members = fx.pki.path("members");
    std::fs::create_dir(&members).unwrap();
    let partner = new_signing_key().unwrap();
    write_public(
        &members.join(format!("{PARTNER_ID}.sign.pub")),
        &partner.public_pem,
        false,
    )
    .unwrap();
    let text = uncommented(EXAMPLE);
    assert_ne!(
        text, EXAMPLE,
        "the example has commented-out [[peers]]/[[members]]"
    );
    let cfg = fx
        .load(&text)
        .unwrap_or_else(|e| panic!("the uncommented placeholders do not load: {e}"));
    assert_eq!(cfg.peers.len(), 1);
    assert_eq!(cfg.peers[0].id, PARTNER_ID);
    assert_eq!(cfg.members.len(), 2);
}

/// The checks above can fail: the loader, fed the same rewritten file, refuses an
/// unknown key and a missing key file.
#[test]
fn loader_rejects_broken_variants_of_the_example() {
    let fx = Fixture::new();
    let unknown = EXAMPLE.replace("[storage]\n", "[storage]\nfolder = \"/tmp\"\n");
    assert_ne!(unknown, EXAMPLE);
    let e = fx.load(&unknown).unwrap_err().to_string();
    assert!(e.contains("folder"), "{e}");

    std::fs::remove_file(fx.pki.path(&format!("{NODE_ID}.key"))).unwrap();
    let e = fx.load(EXAMPLE).unwrap_err().to_string();
    assert!(e.contains("tls.key"), "{e}");
}

/// The files the metadata in Cargo.toml packages exist, and the maintainer scripts are
/// executable and carry the token cargo-deb replaces with its systemd fragments.
#[test]
fn deb_metadata_assets_exist() {
    use std::os::unix::fs::PermissionsExt;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[package.metadata.deb]"));
    assert!(manifest.contains("maintainer-scripts = \"deploy/debian/\""));
    // The unit is installed by cargo-deb's systemd support (unit-scripts), not as an
    // asset: listing it as an asset gives the "no usable systemd units" warning and no
    // maintainer-script fragments.
    assert!(
        manifest.contains("unit-scripts = \"deploy/systemd\""),
        "systemd-units must name deploy/systemd"
    );
    assert!(root.join("deploy/systemd/certfed.service").is_file());
    for f in [
        "deploy/debian/certfed.toml",
        "README.md",
        "deploy/completions/certfed.bash",
        "deploy/completions/_certfed",
        "deploy/completions/certfed.fish",
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/certfed.json",
    ] {
        assert!(
            manifest.contains(&format!("[\"{f}\"")),
            "{f} is not an asset"
        );
        assert!(root.join(f).is_file(), "{f} is missing");
    }
    for script in ["postinst", "postrm"] {
        let path = root.join("deploy/debian").join(script);
        let s = std::fs::read_to_string(&path).unwrap();
        assert!(
            s.contains("#DEBHELPER#"),
            "{script} needs the #DEBHELPER# token"
        );
        assert!(s.contains("\nset -e\n"), "{script} must use set -e");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{script} must be executable");
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_certfed");

fn generate(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env_remove("CERTFED_NODE")
        .env_remove("CERTFED_CA")
        .env_remove("CERTFED_CERT")
        .env_remove("CERTFED_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The completions and man pages the package installs are the binary's own: a
/// change to the command line without regenerating them fails here (see
/// deploy/completions/README.md for the commands).
#[test]
fn packaged_completions_and_man_pages_are_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (shell, file) in [
        ("bash", "certfed.bash"),
        ("zsh", "_certfed"),
        ("fish", "certfed.fish"),
    ] {
        let committed = std::fs::read(root.join("deploy/completions").join(file)).unwrap();
        assert!(
            committed == generate(&["completions", shell]),
            "deploy/completions/{file} is stale: regenerate it (deploy/completions/README.md)"
        );
    }
    // Completions know the choice flags' words.
    let bash = String::from_utf8(generate(&["completions", "bash"])).unwrap();
    assert!(bash.contains("amber+strict") && bash.contains("ict-services"));

    let dir = tempfile::tempdir().unwrap();
    generate(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    let mut fresh: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fresh.sort();
    let mut committed: Vec<String> = std::fs::read_dir(root.join("deploy/man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    assert_eq!(fresh, committed, "deploy/man is stale: regenerate it");
    assert!(fresh.contains(&"certfed.1".to_string()));
    assert!(fresh.contains(&"certfed-check-config.1".to_string()));
    for f in &fresh {
        assert!(
            std::fs::read(dir.path().join(f)).unwrap()
                == std::fs::read(root.join("deploy/man").join(f)).unwrap(),
            "deploy/man/{f} is stale: regenerate it"
        );
    }
    let man = std::fs::read_to_string(root.join("deploy/man/certfed.1")).unwrap();
    assert!(
        man.contains("Exit codes"),
        "the man page lists the exit codes"
    );
}

/// `systemctl reload` runs `check-config` first (a bad file fails the reload),
/// then SIGHUP; the README's packaged-config comment says peers reload too.
#[test]
fn unit_checks_the_configuration_before_reloading() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/systemd/certfed.service")).unwrap();
    let reloads: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecReload="))
        .collect();
    assert_eq!(
        reloads,
        [
            "/usr/bin/certfed check-config --config /etc/certfed/certfed.toml",
            "/bin/kill -HUP $MAINPID"
        ]
    );
    assert!(unit.contains("ExecStart=/usr/bin/certfed serve --config /etc/certfed/certfed.toml"));
    assert!(unit.contains("Type=notify"));
    assert!(
        !EXAMPLE.contains("[[peers]] changes need"),
        "peers are reloaded by SIGHUP"
    );
    assert!(EXAMPLE.contains("check-config"));
}

/// `dpkg --purge` removes the certfed user; files the operator left in
/// /etc/certfed must not stay owned by its uid. postrm works on the real
/// /etc/certfed and user database, so this checks the script (valid sh, the
/// hand-over to root before the user is deleted) rather than running it here.
#[test]
fn purge_hands_leftover_keys_to_root_before_deleting_the_user() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let s = std::fs::read_to_string(root.join("deploy/debian/postrm")).unwrap();
    let chown = s
        .find("-exec chown root:root")
        .expect("postrm hands leftover files to root");
    let deluser = s.find("deluser --system").expect("postrm removes the user");
    assert!(
        chown < deluser,
        "chown must happen while the user still exists"
    );
    let st = std::process::Command::new("sh")
        .args(["-n"])
        .arg(root.join("deploy/debian/postrm"))
        .status()
        .unwrap();
    assert!(st.success(), "postrm is valid sh");
}

/// The packaged unit with the PostgreSQL drop-in the README shows
/// (`deploy/examples/certfed.service.d/postgres.conf`, the same text) passes
/// `systemd-analyze verify` without a warning, and the drop-in is applied
/// (the merged unit orders after PostgreSQL and selects the backend). A
/// drop-in with a misspelt key is caught by the same check. Skipped where
/// systemd-analyze is not installed.
#[test]
fn the_postgres_drop_in_verifies_with_the_unit() {
    use std::process::Command;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let drop_in =
        std::fs::read_to_string(root.join("deploy/examples/certfed.service.d/postgres.conf"))
            .unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block: String = drop_in.lines().map(|l| format!("  {l}\n")).collect();
    assert!(
        readme.contains(&block),
        "the README shows deploy/examples/certfed.service.d/postgres.conf as it is:\n{block}"
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n*** SKIPPED: systemd-analyze is not installed ***\n");
        return;
    }
    let verify = |drop_in: &str| -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        // The unit as installed, its binary the one built here (verify
        // checks that ExecStart's program exists).
        let unit = std::fs::read_to_string(root.join("deploy/systemd/certfed.service"))
            .unwrap()
            .replace("/usr/bin/certfed", env!("CARGO_BIN_EXE_certfed"));
        std::fs::write(dir.path().join("certfed.service"), unit).unwrap();
        std::fs::create_dir(dir.path().join("certfed.service.d")).unwrap();
        std::fs::write(dir.path().join("certfed.service.d/postgres.conf"), drop_in).unwrap();
        let run = |level: &str| {
            let out = Command::new("systemd-analyze")
                .current_dir(dir.path())
                .env("SYSTEMD_LOG_LEVEL", level)
                .args(["verify", "--man=no", "./certfed.service"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
        };
        // Warnings at the default level; the merged unit at debug level.
        (run("debug"), run("info"))
    };
    let (all, warnings) = verify(&drop_in);
    assert!(warnings.is_empty(), "{warnings}");
    assert!(
        all.contains("DropIn Path:") && all.contains("certfed.service.d/postgres.conf"),
        "the drop-in is read"
    );
    assert!(
        all.contains("Environment: CERTFED__STORAGE__BACKEND=postgres"),
        "the drop-in selects PostgreSQL"
    );
    assert!(
        all.contains("After: postgresql.service"),
        "the unit starts after PostgreSQL"
    );
    // The check can fail: a misspelt key is reported.
    let (_, warnings) = verify(&drop_in.replace("Environment=", "Enviroment="));
    assert!(warnings.contains("Unknown key 'Enviroment'"), "{warnings}");
}
