//! The parts of a scaled layout run as separate processes on one machine: a private PKI
//! (a CA, one server certificate for every service, a client certificate, and a client
//! certificate from an unrelated CA), a PostgreSQL server that can be paused and resumed,
//! `flow-store` and `script-host` processes, and proxies that see their own `/etc/hosts`
//! (a private mount namespace), so that one worker name resolves to several loopback
//! addresses as a Kubernetes headless Service resolves to its pods.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{Lines, WAIT};

/// PEM files of a private PKI, in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for `hosts` (DNS names and IP literals), a client
    /// certificate signed by the CA, and a client certificate signed by another CA.
    pub fn new(hosts: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("pki dir");
        let (ca_pem, issuer) = ca("flowtap fault-test CA");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("write ca.pem");
        let server = leaf(hosts, ExtendedKeyUsagePurpose::ServerAuth, &issuer);
        write_pair(dir.path(), "server", server);
        let client = leaf(&["proxy"], ExtendedKeyUsagePurpose::ClientAuth, &issuer);
        write_pair(dir.path(), "client", client);
        let (_, rogue_issuer) = ca("someone else's CA");
        let rogue = leaf(
            &["proxy"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &rogue_issuer,
        );
        write_pair(dir.path(), "rogue", rogue);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }

    /// `--tls-cert --tls-key --tls-client-ca` for a server.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("server.pem"),
            "--tls-key".into(),
            self.path("server.key"),
            "--tls-client-ca".into(),
            self.path("ca.pem"),
        ]
    }

    /// `--grpc-ca --grpc-cert --grpc-key` for a client.
    pub fn client_args(&self) -> Vec<String> {
        vec![
            "--grpc-ca".into(),
            self.path("ca.pem"),
            "--grpc-cert".into(),
            self.path("client.pem"),
            "--grpc-key".into(),
            self.path("client.key"),
        ]
    }
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("generate a CA key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'static, KeyPair>,
) -> (String, String) {
    let key = KeyPair::generate().expect("generate a leaf key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf names");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer).expect("sign a leaf");
    (cert.pem(), key.serialize_pem())
}

fn write_pair(dir: &Path, name: &str, (cert, key): (String, String)) {
    std::fs::write(dir.join(format!("{name}.pem")), cert).expect("write a certificate");
    std::fs::write(dir.join(format!("{name}.key")), key).expect("write a key");
}

/// A PostgreSQL server of scripts/pg-test-server, stopped when this test process exits.
pub struct Postgres {
    pub url: String,
}

fn pg_script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-test-server")
}

impl Postgres {
    pub fn start() -> Postgres {
        let output = Command::new(pg_script())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/pg-test-server");
        assert!(output.status.success(), "scripts/pg-test-server failed");
        let url = String::from_utf8(output.stdout)
            .expect("a UTF-8 URL")
            .trim()
            .to_string();
        Postgres { url }
    }

    fn run(&self, action: &str) {
        let status = Command::new(pg_script())
            .args([action, &self.url])
            .status()
            .expect("run scripts/pg-test-server");
        assert!(status.success(), "pg-test-server {action} failed");
    }

    /// Stops the server, keeping its data: an outage.
    pub fn pause(&self) {
        self.run("pause");
    }

    /// Starts it again on the same port.
    pub fn resume(&self) {
        self.run("resume");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(pg_script())
            .args(["stop", &self.url])
            .stderr(Stdio::null())
            .status();
    }
}

/// One service process with its output collected.
pub struct Service {
    pub name: String,
    pub child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Service {
    pub fn spawn(name: &str, mut command: Command) -> Service {
        let mut child = command
            .env_remove("FLOWTAP_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = Lines::collect(child.stdout.take().expect("piped"));
        let stderr = Lines::collect(child.stderr.take().expect("piped"));
        Service {
            name: name.to_string(),
            child,
            stdout,
            stderr,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", self.name);
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait (bounded) for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {WAIT:?} of SIGTERM; stderr: {:?}",
                self.name,
                self.stderr.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a line of stdout or stderr containing `text`, and returns it.
    pub fn wait_for_line(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            for lines in [&self.stdout, &self.stderr] {
                if let Some(line) = lines.all().into_iter().find(|l| l.contains(text)) {
                    return line;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: no line with {text:?} within {WAIT:?}; stdout {:?}, stderr {:?}",
                self.name,
                self.stdout.all(),
                self.stderr.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on every address of `hosts` at once (bound on the first, checked on the rest).
pub fn port_free_on(hosts: &[&str]) -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind((hosts[0], 0)).expect("bind a throw-away port");
        let port = first.local_addr().expect("local addr").port();
        drop(first);
        if hosts
            .iter()
            .all(|h| std::net::TcpListener::bind((*h, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {hosts:?}");
}

/// Parses the address at the end of `line` (after `marker`).
pub fn address_after(line: &str, marker: &str) -> SocketAddr {
    line.rsplit(marker)
        .next()
        .map(str::trim)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address after {marker:?} in {line:?}"))
}
