//! Runs the real peers of a Kubernetes PKI against files under test: `openssl verify`
//! for certificate chains, `openssl s_server` as a stand-in kube-apiserver for
//! kubectl, and etcd with etcdctl.
//!
//! A helper whose program is not on PATH panics with a message that names the
//! program and `scripts/install-peers.sh`. No helper skips, because a skipped peer
//! test would pass without having checked anything.
//!
//! Servers listen on 127.0.0.1 only, and each one is stopped when its guard
//! (`FakeApiserver`, `EtcdCluster`) is dropped, also when a test panics. A test
//! process that is killed leaves them running.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const INSTALL_HINT: &str = "Install the test peers with `scripts/install-peers.sh` (as root on \
     Debian 12), or run the whole suite with `scripts/test.sh`, which installs them first.";

/// Environment variables that could send a peer's loopback traffic through a proxy.
const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// How long a peer command may run before it is killed. kubectl and etcdctl have
/// shorter timeouts of their own, so reaching this one means a hung process.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Time allowed for a starting server to print its address or to become healthy.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(20);

const POLL_INTERVAL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Programs and processes
// ---------------------------------------------------------------------------

/// Returns the path of `program` on PATH, or panics with a message that names the
/// program and the install script.
pub fn require_program(program: &str) -> PathBuf {
    let search_path = std::env::var_os("PATH").unwrap_or_default();
    for directory in std::env::split_paths(&search_path) {
        let candidate = directory.join(program);
        if is_executable_file(&candidate) {
            return candidate;
        }
    }
    panic!(
        "`{program}` not found on PATH. The peer tests run the real `{program}` and never \
         skip. {INSTALL_HINT}"
    );
}

fn is_executable_file(path: &Path) -> bool {
    match fs::metadata(path) {
        Ok(metadata) => metadata.is_file() && metadata.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Builds a command for a peer program with stdin closed and without the proxy
/// variables, so that every connection goes straight to 127.0.0.1.
pub fn peer_command(program: &str) -> Command {
    let mut command = Command::new(require_program(program));
    command.stdin(Stdio::null());
    for variable in PROXY_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// Removes every inherited variable whose name starts with `prefix`, because etcd
/// reads `ETCD_*` and etcdctl reads `ETCDCTL_*` variables as flags.
fn remove_env_with_prefix(command: &mut Command, prefix: &str) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with(prefix) {
            command.env_remove(name);
        }
    }
}

/// Runs `command` to completion and collects its output. A command still running
/// after `timeout` is killed, and its stderr then ends with a line saying so.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start `{program}`: {error}. {INSTALL_HINT}"));

    // Read both pipes on their own threads so that a chatty child cannot block on a
    // full pipe while this thread waits for it to exit.
    let stdout = spawn_pipe_reader(child.stdout.take());
    let stderr = spawn_pipe_reader(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("failed to poll a peer process") {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child
                .wait()
                .expect("failed to wait for a killed peer process");
        }
        thread::sleep(Duration::from_millis(10));
    };

    let stdout = collect_pipe(stdout);
    let mut stderr = collect_pipe(stderr);
    if timed_out {
        let note = format!("\n`{program}` timed out after {timeout:?} and was killed\n");
        stderr.extend_from_slice(note.as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

fn spawn_pipe_reader(pipe: Option<impl std::io::Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = sender.send(bytes);
        });
    }
    receiver
}

/// Returns what a pipe reader collected. A process that the peer started in the
/// background can keep the pipe open after the peer exits, so the wait is bounded.
fn collect_pipe(receiver: mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
    receiver
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default()
}

/// Formats a peer's exit status, stdout and stderr for an assertion message.
pub fn describe_output(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Returns the last `line_count` lines of a server log, or a note if it is unreadable.
fn log_tail(path: &Path, line_count: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(line_count);
            lines[start..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

fn absolute(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()))
}

/// Kills and reaps a server process. Errors are ignored because the process may
/// already have exited.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// Returns a TCP port on 127.0.0.1 that was free a moment ago and that this test
/// process has not returned before.
///
/// Another process can still take the port before the server binds it, so the
/// etcd starter retries with new ports when a member reports the address in use.
/// The fake apiserver needs no port from here because it binds port 0 itself.
pub fn free_port() -> u16 {
    static RETURNED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("failed to bind a free TCP port on 127.0.0.1");
        let port = listener
            .local_addr()
            .expect("bound listener has an address")
            .port();
        let mut returned_ports = RETURNED_PORTS
            .lock()
            .unwrap_or_else(|error| error.into_inner());
        if returned_ports.insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------
// openssl
// ---------------------------------------------------------------------------

/// Verifies `leaf` with `openssl verify -x509_strict -purpose PURPOSE`, trusting
/// only `ca_files` and using `untrusted` as intermediates.
///
/// `purpose` is an openssl purpose name such as `sslserver` or `sslclient`. The
/// system trust store is not used. Returns openssl's output on rejection.
pub fn openssl_verify(
    ca_files: &[&Path],
    untrusted: &[&Path],
    leaf: &Path,
    purpose: &str,
) -> Result<(), String> {
    assert!(
        !ca_files.is_empty(),
        "openssl_verify needs at least one trusted CA file"
    );
    let scratch = tempfile::tempdir().expect("failed to create a temporary directory");

    // openssl 3.0 keeps only the last -CAfile and -untrusted option, so several
    // files are joined into one bundle each.
    let trusted_bundle = scratch.path().join("trusted.pem");
    concatenate_pem_files(ca_files, &trusted_bundle);

    let mut command = peer_command("openssl");
    command.args([
        "verify",
        "-x509_strict",
        "-no-CApath",
        "-no-CAstore",
        "-purpose",
        purpose,
    ]);
    command.arg("-CAfile").arg(&trusted_bundle);
    if !untrusted.is_empty() {
        let untrusted_bundle = scratch.path().join("untrusted.pem");
        concatenate_pem_files(untrusted, &untrusted_bundle);
        command.arg("-untrusted").arg(untrusted_bundle);
    }
    command.arg(leaf);

    let output = run_with_timeout(&mut command, COMMAND_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && stdout.trim_end().ends_with(": OK") {
        Ok(())
    } else {
        Err(format!(
            "openssl verify -x509_strict -purpose {purpose} rejected {}: {}",
            leaf.display(),
            describe_output(&output)
        ))
    }
}

fn concatenate_pem_files(files: &[&Path], bundle: &Path) {
    let mut contents = String::new();
    for file in files {
        let text = fs::read_to_string(file)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", file.display()));
        contents.push_str(&text);
        if !text.ends_with('\n') {
            contents.push('\n');
        }
    }
    fs::write(bundle, contents).expect("failed to write a PEM bundle");
}

/// Returns whether the private key in `key` belongs to the certificate in `cert`,
/// by comparing the public keys that openssl extracts from each. A file that
/// openssl cannot read counts as no match, and openssl's message goes to stderr.
pub fn key_matches_cert(key: &Path, cert: &Path) -> bool {
    let mut key_command = peer_command("openssl");
    key_command.args(["pkey", "-pubout", "-in"]).arg(key);
    let mut cert_command = peer_command("openssl");
    cert_command
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(cert);

    let from_key = run_with_timeout(&mut key_command, COMMAND_TIMEOUT);
    let from_cert = run_with_timeout(&mut cert_command, COMMAND_TIMEOUT);
    for (file, output) in [(key, &from_key), (cert, &from_cert)] {
        if !output.status.success() {
            eprintln!(
                "openssl failed to read {}: {}",
                file.display(),
                describe_output(output)
            );
            return false;
        }
    }
    from_key.stdout == from_cert.stdout
}

// ---------------------------------------------------------------------------
// Fake kube-apiserver and kubectl
// ---------------------------------------------------------------------------

/// Body that the fake apiserver returns for `GET /version`.
pub const FAKE_APISERVER_VERSION: &str = r#"{"major":"1","minor":"30","gitVersion":"v1.30.0"}"#;

/// Value of kubectl's `--request-timeout`. kubectl appends it to the request as
/// `?timeout=10s`, and the fake apiserver serves a file of that exact name.
const KUBECTL_REQUEST_TIMEOUT: &str = "10s";

/// An `openssl s_server` in place of kube-apiserver: it serves a certificate
/// like `--tls-cert-file`, requires a client certificate issued by a CA in the client
/// CA bundle like `--client-ca-file`, and returns a fixed body for `GET /version`.
/// The process is killed on drop.
///
/// NOTE: s_server handles one connection at a time and returns status 200 with an
/// error text for any other path, so a test must compare the body with
/// `FAKE_APISERVER_VERSION` and not only check kubectl's exit status.
pub struct FakeApiserver {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _directory: TempDir,
}

impl FakeApiserver {
    /// Starts the server on a free port of 127.0.0.1. `serving_cert` may hold
    /// intermediates after the leaf, and the server sends them as kube-apiserver
    /// would. Panics if openssl is missing or the server does not start.
    pub fn start(serving_cert: &Path, serving_key: &Path, client_ca: &Path) -> Self {
        let serving_cert = absolute(serving_cert);
        let serving_key = absolute(serving_key);
        let client_ca = absolute(client_ca);

        let directory = tempfile::tempdir().expect("failed to create a temporary directory");
        write_version_files(directory.path());
        let log_path = directory.path().join("s_server.log");
        let log = File::create(&log_path).expect("failed to create the s_server log");

        let mut command = peer_command("openssl");
        command.current_dir(directory.path());
        // Port 0 lets the kernel choose, and s_server prints the port it got.
        command.args(["s_server", "-accept", "127.0.0.1:0", "-HTTP"]);
        command
            .arg("-cert")
            .arg(&serving_cert)
            .arg("-key")
            .arg(&serving_key);
        // Without -chainCAfile, s_server completes its chain from the -CAfile store,
        // which contains the client CAs. Pointing it at the serving file makes it send
        // that file's certificates only.
        command.arg("-chainCAfile").arg(&serving_cert);
        command.arg("-CAfile").arg(&client_ca);
        // -Verify 1 requires a client certificate, but s_server accepts one that
        // fails verification unless -verify_return_error is also given.
        command.args([
            "-Verify",
            "1",
            "-verify_return_error",
            "-no-CApath",
            "-no-CAstore",
        ]);
        command.stdout(log.try_clone().expect("failed to share the s_server log"));
        command.stderr(log);

        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start `openssl s_server`: {error}"));
        let mut server = FakeApiserver {
            child,
            port: 0,
            log_path,
            _directory: directory,
        };
        server.port = server.wait_for_port();
        server
    }

    /// Waits for s_server's `ACCEPT 127.0.0.1:PORT` line and returns the port.
    fn wait_for_port(&mut self) -> u16 {
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            let log = fs::read_to_string(&self.log_path).unwrap_or_default();
            let port = log
                .lines()
                .find_map(|line| line.strip_prefix("ACCEPT 127.0.0.1:"))
                .and_then(|port| port.trim().parse().ok());
            if let Some(port) = port {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("openssl s_server exited with {status} before accepting:\n{log}");
            }
            if Instant::now() >= deadline {
                panic!(
                    "openssl s_server printed no ACCEPT line in {SERVER_START_TIMEOUT:?}:\n{log}"
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the server URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Returns what s_server printed, including its verification of each client.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Writes the `/version` response, with HTTP/1.1 headers because s_server's -HTTP
/// mode sends each file as it is, under every path that kubectl requests.
fn write_version_files(directory: &Path) {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{FAKE_APISERVER_VERSION}",
        FAKE_APISERVER_VERSION.len()
    );
    let with_timeout = format!("version?timeout={KUBECTL_REQUEST_TIMEOUT}");
    for name in ["version", with_timeout.as_str()] {
        fs::write(directory.join(name), &response).expect("failed to write the version file");
    }
}

/// Runs `kubectl --kubeconfig KUBECONFIG [--server URL] get --raw /version`.
///
/// On success stdout contains the response body. Stdin is closed, so a kubeconfig
/// without credentials makes kubectl fail at its username prompt instead of
/// waiting.
pub fn kubectl_get_version(kubeconfig: &Path, server_override: Option<&str>) -> Output {
    let mut command = peer_command("kubectl");
    command.arg("--kubeconfig").arg(kubeconfig);
    if let Some(server) = server_override {
        command.arg("--server").arg(server);
    }
    command.arg(format!("--request-timeout={KUBECTL_REQUEST_TIMEOUT}"));
    command.args(["get", "--raw", "/version"]);
    run_with_timeout(&mut command, COMMAND_TIMEOUT)
}

// ---------------------------------------------------------------------------
// etcd and etcdctl
// ---------------------------------------------------------------------------

/// TLS files of one etcd member, named after the etcd flags that take them.
#[derive(Clone, Copy, Debug)]
pub struct EtcdMemberTls<'a> {
    /// `--cert-file`: serving certificate for clients.
    pub cert: &'a Path,
    /// `--key-file`.
    pub key: &'a Path,
    /// `--trusted-ca-file`: CAs that issue client certificates.
    pub trusted_ca: &'a Path,
    /// `--peer-cert-file`: used both to serve and to connect to other members.
    pub peer_cert: &'a Path,
    /// `--peer-key-file`.
    pub peer_key: &'a Path,
    /// `--peer-trusted-ca-file`: CAs that issue peer certificates.
    pub peer_trusted_ca: &'a Path,
}

/// TLS files that etcdctl uses, named after its flags.
#[derive(Clone, Copy, Debug)]
pub struct EtcdClientTls<'a> {
    /// `--cacert`: CAs that issue the members' serving certificates.
    pub cacert: &'a Path,
    /// `--cert`: client certificate.
    pub cert: &'a Path,
    /// `--key`.
    pub key: &'a Path,
}

/// A running etcd cluster of one or more members on 127.0.0.1, with client
/// certificate authentication on both client and peer connections. Every member
/// process is killed on drop.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    _directory: TempDir,
}

struct EtcdMember {
    child: Child,
    client_url: String,
    log_path: PathBuf,
}

/// Why one attempt to start a cluster failed.
enum EtcdStartError {
    /// A member could not bind its port, so another attempt on new ports may work.
    AddressInUse(String),
    Failed(String),
}

const ETCD_START_ATTEMPTS: usize = 3;

impl EtcdCluster {
    /// Starts a cluster with one member per entry of `members` and waits until
    /// etcdctl, presenting `health_client`, finds every member healthy. Panics with
    /// the members' logs if that does not happen within `SERVER_START_TIMEOUT`.
    pub fn start(members: &[EtcdMemberTls<'_>], health_client: &EtcdClientTls<'_>) -> Self {
        Self::try_start(members, health_client, SERVER_START_TIMEOUT)
            .unwrap_or_else(|message| panic!("{message}"))
    }

    /// Starts a cluster like `start` but returns an error with the members' logs
    /// if it is not healthy within `timeout`, so that a test can expect a failure.
    pub fn try_start(
        members: &[EtcdMemberTls<'_>],
        health_client: &EtcdClientTls<'_>,
        timeout: Duration,
    ) -> Result<Self, String> {
        assert!(
            !members.is_empty(),
            "an etcd cluster needs at least one member"
        );
        require_program("etcd");
        require_program("etcdctl");

        let mut last_error = String::new();
        for _ in 0..ETCD_START_ATTEMPTS {
            let mut cluster = Self::spawn(members);
            match cluster.wait_until_healthy(health_client, timeout) {
                Ok(()) => return Ok(cluster),
                Err(EtcdStartError::AddressInUse(message)) => last_error = message,
                Err(EtcdStartError::Failed(message)) => return Err(message),
            }
        }
        Err(format!(
            "etcd found its ports taken in {ETCD_START_ATTEMPTS} attempts. Last error:\n\
             {last_error}"
        ))
    }

    /// Starts every member on new ports, without waiting for any of them.
    fn spawn(members: &[EtcdMemberTls<'_>]) -> Self {
        let directory = tempfile::tempdir().expect("failed to create a temporary directory");
        let names: Vec<String> = (0..members.len())
            .map(|index| format!("member-{index}"))
            .collect();
        let client_urls: Vec<String> = members
            .iter()
            .map(|_| format!("https://127.0.0.1:{}", free_port()))
            .collect();
        let peer_urls: Vec<String> = members
            .iter()
            .map(|_| format!("https://127.0.0.1:{}", free_port()))
            .collect();
        let initial_cluster: Vec<String> = names
            .iter()
            .zip(&peer_urls)
            .map(|(name, url)| format!("{name}={url}"))
            .collect();
        let initial_cluster = initial_cluster.join(",");

        let mut started = Vec::new();
        for (index, tls) in members.iter().enumerate() {
            let member_directory = directory.path().join(&names[index]);
            fs::create_dir(&member_directory).expect("failed to create an etcd member directory");
            let log_path = member_directory.join("etcd.log");
            let log = File::create(&log_path).expect("failed to create an etcd log");

            let mut command = peer_command("etcd");
            remove_env_with_prefix(&mut command, "ETCD");
            command.env("ETCD_UNSUPPORTED_ARCH", go_arch());
            command.arg("--name").arg(&names[index]);
            command.arg("--data-dir").arg(member_directory.join("data"));
            command.args(["--logger", "zap", "--log-outputs", "stderr"]);
            command.args(["--listen-client-urls", &client_urls[index]]);
            command.args(["--advertise-client-urls", &client_urls[index]]);
            command.args(["--listen-peer-urls", &peer_urls[index]]);
            command.args(["--initial-advertise-peer-urls", &peer_urls[index]]);
            command.args(["--initial-cluster", &initial_cluster]);
            command.args(["--initial-cluster-state", "new"]);
            command.args(["--initial-cluster-token", "pkic-test"]);
            command.arg("--cert-file").arg(absolute(tls.cert));
            command.arg("--key-file").arg(absolute(tls.key));
            // etcd 3.4.23 already requires client certificates once a trusted CA file
            // is set, on client and peer connections alike, so the two auth flags
            // change nothing there. They are passed as a kubeadm manifest passes them.
            command.arg("--client-cert-auth");
            command
                .arg("--trusted-ca-file")
                .arg(absolute(tls.trusted_ca));
            command.arg("--peer-cert-file").arg(absolute(tls.peer_cert));
            command.arg("--peer-key-file").arg(absolute(tls.peer_key));
            command.arg("--peer-client-cert-auth");
            command
                .arg("--peer-trusted-ca-file")
                .arg(absolute(tls.peer_trusted_ca));
            command.stdout(log.try_clone().expect("failed to share an etcd log"));
            command.stderr(log);

            let child = command
                .spawn()
                .unwrap_or_else(|error| panic!("failed to start `etcd`: {error}. {INSTALL_HINT}"));
            started.push(EtcdMember {
                child,
                client_url: client_urls[index].clone(),
                log_path,
            });
        }
        EtcdCluster {
            members: started,
            _directory: directory,
        }
    }

    /// Polls `etcdctl endpoint health` on every member until all of them pass.
    fn wait_until_healthy(
        &mut self,
        client: &EtcdClientTls<'_>,
        timeout: Duration,
    ) -> Result<(), EtcdStartError> {
        let deadline = Instant::now() + timeout;
        let mut healthy = vec![false; self.members.len()];
        let mut last_check = String::from("(no health check finished)");
        loop {
            self.check_all_running()?;
            for (index, member) in self.members.iter().enumerate() {
                if healthy[index] {
                    continue;
                }
                let mut command = etcdctl_command(&member.client_url, client, "1s", "2s");
                command.args(["endpoint", "health"]);
                let output = run_with_timeout(&mut command, COMMAND_TIMEOUT);
                healthy[index] = output.status.success();
                if !healthy[index] {
                    last_check = format!("{}: {}", member.client_url, describe_output(&output));
                }
            }
            if healthy.iter().all(|&member_healthy| member_healthy) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EtcdStartError::Failed(format!(
                    "etcd cluster of {} members was not healthy after {timeout:?}. Last \
                     `etcdctl endpoint health`: {last_check}\n{}",
                    self.members.len(),
                    self.log_tails()
                )));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Returns an error if a member has exited, marked as retryable when its log
    /// shows that a port was taken.
    fn check_all_running(&mut self) -> Result<(), EtcdStartError> {
        let mut exited = None;
        for (index, member) in self.members.iter_mut().enumerate() {
            if let Ok(Some(status)) = member.child.try_wait() {
                exited = Some((index, status));
                break;
            }
        }
        let Some((index, status)) = exited else {
            return Ok(());
        };

        let message = format!(
            "etcd member-{index} exited with {status}\n{}",
            self.log_tails()
        );
        if self.log(index).contains("address already in use") {
            Err(EtcdStartError::AddressInUse(message))
        } else {
            Err(EtcdStartError::Failed(message))
        }
    }

    /// Returns the client URL of member `index`, `https://127.0.0.1:PORT`.
    pub fn client_url(&self, index: usize) -> &str {
        &self.members[index].client_url
    }

    /// Returns the client URLs of all members, joined by commas for `--endpoints`.
    pub fn endpoints(&self) -> String {
        let urls: Vec<&str> = self
            .members
            .iter()
            .map(|member| member.client_url.as_str())
            .collect();
        urls.join(",")
    }

    /// Returns everything that member `index` has logged so far.
    pub fn log(&self, index: usize) -> String {
        let bytes = fs::read(&self.members[index].log_path).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn log_tails(&self) -> String {
        let mut tails = String::new();
        for (index, member) in self.members.iter().enumerate() {
            tails.push_str(&format!("--- member-{index} log (last lines) ---\n"));
            tails.push_str(&log_tail(&member.log_path, 25));
            tails.push('\n');
        }
        tails
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            stop(&mut member.child);
        }
    }
}

/// Returns the architecture name as Go spells it. etcd exits at start on an
/// architecture that its "Supported platforms" page does not list as stable, arm64
/// among them for 3.4, unless ETCD_UNSUPPORTED_ARCH is set to that name. The
/// variable has no effect on amd64.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Builds an etcdctl command for the v3 API against `endpoint`, with the given
/// dial and command timeouts in Go duration syntax.
fn etcdctl_command(
    endpoint: &str,
    client: &EtcdClientTls<'_>,
    dial_timeout: &str,
    command_timeout: &str,
) -> Command {
    let mut command = peer_command("etcdctl");
    remove_env_with_prefix(&mut command, "ETCDCTL");
    command.env("ETCDCTL_API", "3");
    command.args(["--endpoints", endpoint]);
    command.arg("--cacert").arg(client.cacert);
    command.arg("--cert").arg(client.cert);
    command.arg("--key").arg(client.key);
    command.arg(format!("--dial-timeout={dial_timeout}"));
    command.arg(format!("--command-timeout={command_timeout}"));
    command
}

/// Writes a key through the first member of a three-member cluster and reads it back
/// through the third. A linearizable read from another member goes through the raft
/// leader, so it needs working peer connections.
pub fn assert_etcd_replicates(etcd: &EtcdCluster, client: &EtcdClientTls<'_>) {
    let put = etcdctl(etcd.client_url(0), client, &["put", "replicated", "yes"]);
    assert!(put.status.success(), "{}", describe_output(&put));
    let get = etcdctl(
        etcd.client_url(2),
        client,
        &["get", "--print-value-only", "replicated"],
    );
    assert!(get.status.success(), "{}", describe_output(&get));
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim_end(), "yes");
}

/// Runs `etcdctl ARGS` with the v3 API against `endpoint`, presenting `client`.
pub fn etcdctl(endpoint: &str, client: &EtcdClientTls<'_>, args: &[&str]) -> Output {
    let mut command = etcdctl_command(endpoint, client, "3s", "5s");
    command.args(args);
    run_with_timeout(&mut command, COMMAND_TIMEOUT)
}

/// Writes `value` under `key_name` through `endpoint`, reads it back, and returns
/// the value that etcd returned.
pub fn etcdctl_put_get(
    endpoint: &str,
    cacert: &Path,
    cert: &Path,
    key: &Path,
    key_name: &str,
    value: &str,
) -> Result<String, String> {
    let client = EtcdClientTls { cacert, cert, key };
    // `--` ends the options, so a value that starts with a dash is stored as given.
    let put = etcdctl(endpoint, &client, &["put", "--", key_name, value]);
    if !put.status.success() {
        return Err(format!(
            "etcdctl put {key_name} failed: {}",
            describe_output(&put)
        ));
    }
    let get = etcdctl(
        endpoint,
        &client,
        &["get", "--print-value-only", "--", key_name],
    );
    if !get.status.success() {
        return Err(format!(
            "etcdctl get {key_name} failed: {}",
            describe_output(&get)
        ));
    }
    let stdout = String::from_utf8_lossy(&get.stdout);
    Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned())
}
