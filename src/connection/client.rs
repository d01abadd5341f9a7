//! The connection: one fred client per `RedisClient`, configured with safe limits, a connection
//! state that the rest of the crate reads without I/O, a circuit that opens on the first
//! connection-level failure (so calls go to the fallback at once) and a probe that closes it
//! again when Redis answers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::config::{
  ClusterDiscoveryPolicy, ConnectionConfig, PerformanceConfig, ReconnectPolicy, Server,
  ServerConfig, TcpConfig, TlsConfig, TlsConnector, TlsHostMapping, UnresponsiveConfig,
};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use tokio::sync::watch;

use crate::connection::config::{Settings, Topology};
use crate::error::{from_fred, Code, GuardError};

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;
const CLOSED: u8 = 3;

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Counters a client keeps (for health, tests and the fault suite).
#[derive(Default)]
pub struct Counters {
  pub timeouts: AtomicU64,
  pub errors: AtomicU64,
  pub state_changes: AtomicU64,
  pub reconnects: AtomicU64,
  pub fallbacks: AtomicU64,
  /// Locks deleted after Redis applied a write the client had given up on (src/lock.rs).
  pub orphans_removed: AtomicU64,
}

/// Shared state of one client; every store and lock of that client holds an `Arc` of it.
pub struct ClientInner {
  pub id: u32,
  pub settings: Settings,
  pub redis: Client,
  state: AtomicU8,
  state_tx: watch::Sender<u8>,
  ever_up: AtomicBool,
  probing: AtomicBool,
  /// Wakes a sleeping probe at once when fred reports a (re)connection.
  probe_wake: tokio::sync::Notify,
  /// A cluster node reported an empty host in CLUSTER SLOTS (`SeedResolver`).
  empty_host_seen: Arc<AtomicBool>,
  last_error: Mutex<Option<String>>,
  tasks: Mutex<Vec<tokio::task::AbortHandle>>,
  pub counters: Counters,
  /// When the client was made: a first connection still pending after the connect timeout no
  /// longer makes calls wait (`usable`).
  started: Instant,
  /// A call already waited a whole deadline for the first connection: the next ones do not.
  waited_for_first: AtomicBool,
  /// Per feature calls, fallbacks and errors, and the round-trip histogram (`metrics()`).
  pub metrics: crate::metrics::Metrics,
}

/// A server address; with `tls.servername`, the name its certificate is verified against
/// (fred otherwise verifies against the host it dials, ignoring the option).
fn server(s: &Settings, h: &(String, u16)) -> Server {
  let mut srv = Server::new(h.0.clone(), h.1);
  if let Some(name) = s.tls.as_ref().and_then(|t| t.servername.as_deref()) {
    srv.tls_server_name = Some(name.into());
  }
  srv
}

fn tls_connector(s: &Settings) -> std::result::Result<Option<TlsConfig>, GuardError> {
  use rustls::pki_types::pem::PemObject;
  use rustls::pki_types::{CertificateDer, PrivateKeyDer};
  let Some(t) = &s.tls else { return Ok(None) };
  let provider = Arc::new(rustls::crypto::ring::default_provider());
  let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
    .with_safe_default_protocol_versions()
    .map_err(|e| GuardError::config(format!("TLS setup failed: {e}")))?;
  let builder = if t.insecure {
    builder
      .dangerous()
      .with_custom_certificate_verifier(Arc::new(NoVerify(provider.clone())))
  } else {
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca {
      Some(pem) => {
        let mut n = 0;
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
          let c = c.map_err(|_| GuardError::config("tls.ca holds an unreadable certificate"))?;
          roots
            .add(c)
            .map_err(|e| GuardError::config(format!("tls.ca: {e}")))?;
          n += 1;
        }
        if n == 0 {
          return Err(GuardError::config("tls.ca holds no certificate"));
        }
      }
      None => {
        let found = rustls_native_certs::load_native_certs().certs;
        for c in found {
          let _ = roots.add(c);
        }
      }
    }
    builder.with_root_certificates(roots)
  };
  let config = match (&t.cert, &t.key) {
    (Some(cert), Some(key)) => {
      let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| GuardError::config("tls.cert holds an unreadable certificate"))?;
      if chain.is_empty() {
        return Err(GuardError::config("tls.cert holds no certificate"));
      }
      let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|_| GuardError::config("tls.key holds no readable private key"))?;
      builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| GuardError::config(format!("tls.cert/tls.key: {e}")))?
    }
    _ => builder.with_no_client_auth(),
  };
  let hostnames = match &t.servername {
    Some(name) => TlsHostMapping::Custom(Arc::new(FixedName(name.clone()))),
    None => TlsHostMapping::None,
  };
  Ok(Some(TlsConfig {
    connector: TlsConnector::from(config),
    hostnames,
  }))
}

#[derive(Debug)]
struct FixedName(String);
impl fred::types::config::HostMapping for FixedName {
  fn map(&self, _ip: &std::net::IpAddr, _default_host: &str) -> Option<String> {
    Some(self.0.clone())
  }
}

/// The explicit `tls.insecure` switch: accepts any certificate (tests only; documented as such).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);
impl rustls::client::danger::ServerCertVerifier for NoVerify {
  fn verify_server_cert(
    &self,
    _: &rustls::pki_types::CertificateDer<'_>,
    _: &[rustls::pki_types::CertificateDer<'_>],
    _: &rustls::pki_types::ServerName<'_>,
    _: &[u8],
    _: rustls::pki_types::UnixTime,
  ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
    Ok(rustls::client::danger::ServerCertVerified::assertion())
  }
  fn verify_tls12_signature(
    &self,
    m: &[u8],
    c: &rustls::pki_types::CertificateDer<'_>,
    d: &rustls::DigitallySignedStruct,
  ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
  }
  fn verify_tls13_signature(
    &self,
    m: &[u8],
    c: &rustls::pki_types::CertificateDer<'_>,
    d: &rustls::DigitallySignedStruct,
  ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
  }
  fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
    self.0.signature_verification_algorithms.supported_schemes()
  }
}

/// fred's DNS hook, for cluster clients. A node that does not know its own address — a one-node
/// cluster started without `cluster-announce-ip`, which has never met another node — reports an
/// empty host in `CLUSTER SLOTS`: "the address you used to reach me". fred 10.1 keeps that `""`
/// as the node's host (it uses the connection's host only for a null one) and then fails to
/// resolve `:port` forever, so the client never becomes ready. Here an empty host is the seeds'
/// host: the seeds on the reported port first (the node that answered is one of them), else
/// every seed's host on that port. Every other host resolves as fred's own resolver does.
///
/// Over TLS this cannot help: fred verifies the certificate against the host it dials, `""`,
/// which rustls rejects (`InvalidDnsNameError`); `with_hint` then says what to set on the node.
struct SeedResolver {
  seeds: Vec<(String, u16)>,
  /// Set once a node reported an empty host (read by `ClientInner::with_hint`).
  empty_host_seen: Arc<AtomicBool>,
}

impl SeedResolver {
  /// The host names to resolve for `host:port`.
  fn hosts_for(&self, host: &str, port: u16) -> Vec<String> {
    if !host.is_empty() {
      return vec![host.to_string()];
    }
    let mut hosts: Vec<String> = Vec::new();
    let same_port = self.seeds.iter().any(|(_, p)| *p == port);
    for (h, p) in &self.seeds {
      if (*p == port || !same_port) && !hosts.contains(h) {
        hosts.push(h.clone());
      }
    }
    hosts
  }
}

#[async_trait::async_trait]
impl fred::types::Resolve for SeedResolver {
  async fn resolve(
    &self,
    host: fred::bytes_utils::Str,
    port: u16,
  ) -> std::result::Result<Vec<std::net::SocketAddr>, fred::error::Error> {
    use std::net::ToSocketAddrs;
    let hosts = self.hosts_for(&host, port);
    if host.is_empty() {
      self.empty_host_seen.store(true, Ordering::Release);
    }
    let what = if host.is_empty() {
      format!(
        "{}:{port} (the node reported an empty host in CLUSTER SLOTS: the seed's host is used)",
        hosts.join(",")
      )
    } else {
      format!("{host}:{port}")
    };
    let found = tokio::task::spawn_blocking(move || {
      let mut out: Vec<std::net::SocketAddr> = Vec::new();
      for h in &hosts {
        // Like fred's resolver (`"host:port".to_socket_addrs()`), without its IPv6 ambiguity.
        if let Ok(addrs) = (h.as_str(), port).to_socket_addrs() {
          for a in addrs {
            if !out.contains(&a) {
              out.push(a);
            }
          }
        }
      }
      out
    })
    .await
    .unwrap_or_default();
    if found.is_empty() {
      Err(fred::error::Error::new(
        fred::error::ErrorKind::IO,
        format!("Failed to resolve {what}"),
      ))
    } else {
      Ok(found)
    }
  }
}

/// Build the fred client with every limit set (fred's own defaults are unsafe for a web server).
pub fn build_fred(s: &Settings) -> std::result::Result<Client, GuardError> {
  let server = match &s.topology {
    Topology::Standalone { host, port } => ServerConfig::Centralized {
      server: server(s, &(host.clone(), *port)),
    },
    Topology::Cluster { nodes } => ServerConfig::Clustered {
      hosts: nodes.iter().map(|n| server(s, n)).collect(),
      policy: ClusterDiscoveryPolicy::ConfigEndpoint,
    },
    Topology::Sentinel {
      nodes,
      name,
      username,
      password,
    } => ServerConfig::Sentinel {
      hosts: nodes.iter().map(|n| server(s, n)).collect(),
      service_name: name.clone(),
      username: username.clone(),
      password: password.clone(),
    },
  };
  let config = Config {
    // Reconnect (with the policy below) even when the very first connection fails.
    fail_fast: false,
    username: s.username.clone(),
    password: s.password.clone(),
    server,
    database: s.db,
    tls: tls_connector(s)?,
    ..Default::default()
  };
  let mut policy = ReconnectPolicy::new_exponential(0, s.reconnect_min_ms, s.reconnect_max_ms, 2);
  policy.set_jitter(s.reconnect_jitter_ms);
  let deadline = s.command_timeout;
  let connection = ConnectionConfig {
    connection_timeout: s.connect_timeout,
    internal_command_timeout: s.connect_timeout,
    // An increment is never re-sent after a dropped connection.
    max_command_attempts: 1,
    // fred follows MOVED/ASK by writing the command again, which costs a write attempt: with
    // one attempt it fails every redirected command with "Too many failed write attempts.", an
    // error it also gives to commands replayed after a reconnect (which may have run). With 0
    // redirections it answers "Too many redirections." instead — proof the command did not run
    // — after refreshing its slot table on MOVED, and scripts.rs sends such calls again.
    max_redirections: 0,
    // Notice a dead or hung connection even when no command is waiting on the circuit.
    unresponsive: UnresponsiveConfig {
      max_timeout: Some((deadline * 4).max(Duration::from_millis(1000))),
      interval: Duration::from_millis(250),
    },
    reconnect_on_auth_error: false,
    // Bounded queue: more than this many waiting commands fail at once (Backpressure).
    max_command_buffer_len: s.max_command_buffer,
    tcp: TcpConfig {
      nodelay: Some(true),
      ..Default::default()
    },
    ..Default::default()
  };
  let performance = PerformanceConfig {
    default_command_timeout: deadline,
    ..Default::default()
  };
  Builder::from_config(config)
    .set_policy(policy)
    .set_connection_config(connection)
    .set_performance_config(performance)
    .build()
    .map_err(|e| GuardError::config(format!("invalid configuration: {}", s.mask(e.details()))))
}

/// Whether a PING got an answer from a working, authenticated connection. `NOPERM` counts: an
/// ACL user limited to what the store needs (`+@read +@write +@scripting`) may not run PING,
/// yet the server answered and the user's own commands work.
fn answered(r: &std::result::Result<String, fred::error::Error>) -> bool {
  match r {
    Ok(_) => true,
    Err(e) => e.details().starts_with("NOPERM"),
  }
}

impl ClientInner {
  pub fn new(settings: Settings) -> std::result::Result<Arc<Self>, GuardError> {
    let redis = build_fred(&settings)?;
    let (state_tx, _) = watch::channel(CONNECTING);
    Ok(Arc::new(ClientInner {
      id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
      settings,
      redis,
      state: AtomicU8::new(CONNECTING),
      state_tx,
      ever_up: AtomicBool::new(false),
      probing: AtomicBool::new(false),
      probe_wake: tokio::sync::Notify::new(),
      empty_host_seen: Arc::new(AtomicBool::new(false)),
      last_error: Mutex::new(None),
      tasks: Mutex::new(Vec::new()),
      counters: Counters::default(),
      started: Instant::now(),
      waited_for_first: AtomicBool::new(false),
      metrics: crate::metrics::Metrics::default(),
    }))
  }

  /// Start connecting in the background (on napi's tokio runtime) and watch fred's events.
  pub fn start(self: &Arc<Self>) {
    let me = self.clone();
    let main = napi::bindgen_prelude::spawn(async move {
      let mut errors = me.redis.error_rx();
      let mut reconnects = me.redis.reconnect_rx();
      let mut unresponsive = me.redis.unresponsive_rx();
      if let Topology::Cluster { nodes } = &me.settings.topology {
        // Before the first connection: an empty host in CLUSTER SLOTS is the seed (SeedResolver).
        me.redis
          .set_resolver(Arc::new(SeedResolver {
            seeds: nodes.clone(),
            empty_host_seen: me.empty_host_seen.clone(),
          }))
          .await;
      }
      // fred's connection task is ours to stop too: `close()` may run before the connection is
      // up, and its QUIT would not reach a connection made after it.
      let conn = me.redis.connect().abort_handle();
      me.tasks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(conn.clone());
      if me.state.load(Ordering::Acquire) == CLOSED {
        conn.abort();
        return;
      }
      me.spawn_probe();
      loop {
        tokio::select! {
          e = errors.recv() => match e {
            Ok((e, _)) => {
              let ge = from_fred(&e, &|t| me.settings.mask(t));
              let reason = me.with_hint(ge.message, &e);
              me.mark_down(&reason, ge.code == Code::Auth);
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => break,
          },
          r = reconnects.recv() => match r {
            Ok(_) => {
              me.counters.reconnects.fetch_add(1, Ordering::Relaxed);
              // Connected and authenticated: let the probe confirm with a PING now (a probe
              // that is already running may be asleep for `probe_interval`: wake it).
              me.probe_wake.notify_one();
              me.spawn_probe();
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => break,
          },
          u = unresponsive.recv() => match u {
            Ok(_) => me.mark_down("the connection stopped answering", false),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => break,
          },
        }
        if me.state.load(Ordering::Acquire) == CLOSED {
          break;
        }
      }
    });
    self
      .tasks
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .push(main.abort_handle());
  }

  fn set_state(&self, s: u8) -> u8 {
    let old = self.state.swap(s, Ordering::AcqRel);
    if old != s {
      self.counters.state_changes.fetch_add(1, Ordering::Relaxed);
      // send_replace: the value is stored even while nobody waits in ready() (send() drops it
      // when there is no receiver, and a later ready() would then wait on a stale CONNECTING).
      let _ = self.state_tx.send_replace(s);
    }
    old
  }

  /// The last known state, without I/O.
  pub fn is_up(&self) -> bool {
    self.state.load(Ordering::Acquire) == UP
  }

  pub fn is_closed(&self) -> bool {
    self.state.load(Ordering::Acquire) == CLOSED
  }

  /// A connection error before the first successful connection, made clear where it is likely a
  /// TLS mismatch: a TLS server resets a plaintext client; a plaintext server never answers a
  /// TLS handshake (the attempt times out).
  fn with_hint(&self, message: String, e: &fred::error::Error) -> String {
    if self.ever_up.load(Ordering::Acquire) {
      return message;
    }
    let d = e.details().to_ascii_lowercase();
    let timeout = *e.kind() == fred::error::ErrorKind::Timeout || d.contains("timed out");
    let dropped =
      d.contains("reset by peer") || d.contains("connection closed") || d.contains("eof");
    if self.settings.tls.is_some()
      && self.empty_host_seen.load(Ordering::Acquire)
      && d.contains("invaliddnsname")
    {
      format!("{message} (a cluster node reported an empty host in CLUSTER SLOTS, so there is no name to verify its certificate against: set `cluster-announce-ip` or `cluster-announce-hostname` on the node)")
    } else if self.settings.tls.is_some() && timeout {
      format!("{message} (no answer to the TLS handshake: is this port serving TLS? a plaintext Redis does not answer it)")
    } else if self.settings.tls.is_none() && dropped {
      format!("{message} (the server dropped the connection before answering: if it requires TLS, use rediss:// or the `tls` option)")
    } else {
      message
    }
  }

  /// Open the circuit: calls go to the fallback until the probe sees Redis answer again.
  pub fn mark_down(self: &Arc<Self>, reason: &str, auth: bool) {
    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
    let cur = self.state.load(Ordering::Acquire);
    if cur == CLOSED || cur == DOWN {
      return;
    }
    if self
      .state
      .compare_exchange(cur, DOWN, Ordering::AcqRel, Ordering::Acquire)
      .is_ok()
    {
      self.counters.state_changes.fetch_add(1, Ordering::Relaxed);
      let _ = self.state_tx.send_replace(DOWN);
      let url = self.settings.masked_url();
      if auth {
        tracing::error!(target: "redis_guard", client = self.id as u64, url = url.as_str(), error = reason,
          "Redis rejected the credentials: check the user name and password (falling back)");
      } else if cur == CONNECTING {
        tracing::warn!(target: "redis_guard", client = self.id as u64, url = url.as_str(), error = reason,
          "Redis is unavailable at start-up: serving from the fallback until it answers");
      } else {
        tracing::warn!(target: "redis_guard", client = self.id as u64, url = url.as_str(), error = reason,
          "Redis became unavailable: falling back until it answers again");
      }
      self.spawn_probe();
    }
  }

  fn mark_up(&self) {
    let old = self.set_state(UP);
    if old == UP || old == CLOSED {
      if old == CLOSED {
        self.set_state(CLOSED);
      }
      return;
    }
    let url = self.settings.masked_url();
    if self.ever_up.swap(true, Ordering::AcqRel) {
      tracing::info!(target: "redis_guard", client = self.id as u64, url = url.as_str(), "Redis recovered: back from the fallback");
    } else {
      tracing::info!(target: "redis_guard", client = self.id as u64, url = url.as_str(), "connected to Redis");
    }
  }

  /// While the circuit is open (Redis not known to answer): PING every `probe_interval` once fred is connected.
  fn spawn_probe(self: &Arc<Self>) {
    if self.probing.swap(true, Ordering::AcqRel) {
      return;
    }
    let me = self.clone();
    let h = napi::bindgen_prelude::spawn(async move {
      let mut first = true;
      // A connection that answers nothing (a middlebox that swallows bytes, a peer gone without
      // a RST) is replaced after `silent_limit`, then after twice that, and so on: fred's own
      // unresponsive check never fires while this probe writes PINGs (each write restarts its
      // clock), and a connection that lost bytes stays out of step with its replies forever.
      let silent_limit = (me.settings.command_timeout * 4).max(Duration::from_millis(1000));
      let mut silent_since: Option<Instant> = None;
      let mut replaced = 0u32;
      loop {
        let st = me.state.load(Ordering::Acquire);
        if st == CLOSED || st == UP {
          break;
        }
        if !first {
          tokio::select! {
            _ = tokio::time::sleep(me.settings.probe_interval) => {}
            _ = me.probe_wake.notified() => {}
          }
        }
        first = false;
        if !me.redis.is_connected() {
          silent_since = None;
          continue;
        }
        let sent = Instant::now();
        let r =
          tokio::time::timeout(me.settings.command_timeout, me.redis.ping::<String>(None)).await;
        match r {
          Ok(r) if answered(&r) => {
            me.mark_up();
            break;
          }
          // An error reply (BUSY, LOADING, ...): the connection works.
          Ok(Err(e)) if *e.kind() != fred::error::ErrorKind::Timeout => silent_since = None,
          _ => {
            let since = *silent_since.get_or_insert(sent);
            if since.elapsed() >= silent_limit * (1 << replaced.min(4)) {
              silent_since = None;
              replaced += 1;
              tracing::debug!(target: "redis_guard", client = me.id as u64,
                "the connection answered nothing for {} ms: replacing it", since.elapsed().as_millis());
              let redis = me.redis.clone();
              let limit = me.settings.connect_timeout * 2;
              napi::bindgen_prelude::spawn(async move {
                let _ = tokio::time::timeout(limit, redis.force_reconnection()).await;
              });
            }
          }
        }
      }
      me.probing.store(false, Ordering::Release);
      // A state change that raced with the end of the loop gets a new probe.
      let st = me.state.load(Ordering::Acquire);
      if st == DOWN || st == CONNECTING {
        me.spawn_probe();
      }
    });
    let mut t = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
    t.retain(|h| !h.is_finished());
    t.push(h.abort_handle());
  }

  /// Wait until the first connection attempt settles (at most `timeout`); true when up.
  pub async fn ready(&self, timeout: Duration) -> bool {
    let mut rx = self.state_tx.subscribe();
    let fut = async {
      loop {
        let s = *rx.borrow_and_update();
        if s != CONNECTING {
          return s == UP;
        }
        if rx.changed().await.is_err() {
          return false;
        }
      }
    };
    tokio::time::timeout(timeout, fut).await.unwrap_or(false)
  }

  /// Whether a call should go to Redis now: up, or still connecting for the first time (then
  /// wait for the connection, at most one deadline, and only within the connect timeout).
  pub async fn usable(&self) -> bool {
    match self.state.load(Ordering::Acquire) {
      UP => true,
      // Still connecting for the first time: wait for it, at most one deadline, only until one
      // call has waited a whole deadline in vain, and never past the connect timeout (a
      // handshake that never completes — TLS to a plaintext port — sends no error event, and
      // each call of a chain would otherwise wait a deadline again).
      CONNECTING if !self.waited_for_first.load(Ordering::Acquire) => {
        match self
          .settings
          .connect_timeout
          .checked_sub(self.started.elapsed())
        {
          Some(left) if !left.is_zero() => {
            let up = self.ready(self.settings.command_timeout.min(left)).await;
            if !up && self.state.load(Ordering::Acquire) == CONNECTING {
              self.waited_for_first.store(true, Ordering::Release);
            }
            up
          }
          _ => false,
        }
      }
      _ => false,
    }
  }

  /// Whether this client talks to a Redis Cluster (scripts are grouped by slot).
  pub fn is_cluster(&self) -> bool {
    matches!(self.settings.topology, Topology::Cluster { .. })
  }

  /// Run one Redis operation under the command deadline. Connection-level failures open the
  /// circuit; Redis errors (OOM, NOPERM, ...) are returned for this call only.
  pub async fn run<T, F>(self: &Arc<Self>, fut: F) -> std::result::Result<T, GuardError>
  where
    F: Future<Output = std::result::Result<T, fred::error::Error>>,
  {
    match tokio::time::timeout(self.settings.command_timeout, fut).await {
      Ok(Ok(v)) => Ok(v),
      Ok(Err(e)) => Err(self.on_error(&e)),
      Err(_) => Err(self.on_timeout()),
    }
  }

  pub fn on_timeout(self: &Arc<Self>) -> GuardError {
    self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
    let msg = format!(
      "Redis did not answer within {} ms",
      self.settings.command_timeout.as_millis()
    );
    self.mark_down(&msg, false);
    GuardError::new(Code::Timeout, msg)
  }

  /// Classify a fred error, opening the circuit when it is about the connection.
  pub fn on_error(self: &Arc<Self>, e: &fred::error::Error) -> GuardError {
    // fred's own deadline (`default_command_timeout`) may fire first: count it as a timeout.
    if *e.kind() == fred::error::ErrorKind::Timeout {
      self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
    } else {
      self.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    let ge = from_fred(e, &|t| self.settings.mask(t));
    if crate::redis::scripts::is_redirect(e) {
      // A cluster slot that kept moving for the whole retry budget: this call falls back, the
      // circuit stays up (the cluster answers; the next call finds the slot's new owner).
      return GuardError::new(Code::Unavailable, ge.message);
    }
    if ge.message.contains("READONLY")
      && matches!(self.settings.topology, Topology::Sentinel { .. })
    {
      // The primary we hold a connection to was demoted (a failover without a disconnect):
      // fall back and ask the sentinels again. Redis ran nothing (it refused the write).
      self.mark_down(&ge.message, false);
      let redis = self.redis.clone();
      napi::bindgen_prelude::spawn(async move {
        let _ = redis.force_reconnection().await;
      });
      return GuardError::new(Code::Unavailable, ge.message);
    }
    match ge.code {
      Code::Unavailable | Code::Timeout => self.mark_down(&ge.message, false),
      Code::Auth if e.kind() == &fred::error::ErrorKind::Auth => self.mark_down(&ge.message, true),
      _ => {}
    }
    ge
  }

  pub fn last_error(&self) -> Option<String> {
    self
      .last_error
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .clone()
  }

  pub async fn close(self: &Arc<Self>) {
    if self.set_state(CLOSED) == CLOSED {
      return;
    }
    let _ = tokio::time::timeout(self.settings.command_timeout, self.redis.quit()).await;
    for t in self
      .tasks
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .drain(..)
    {
      t.abort();
    }
    crate::log::unregister(self.id);
  }
}

/// The result of `healthCheck()`.
#[napi(object)]
pub struct HealthResult {
  /// `healthy` (Redis answers quickly), `degraded` (answers slowly, or the deep probe failed)
  /// or `unhealthy` (Redis does not answer: the fallback serves).
  pub status: String,
  /// Whether Redis answered the PING.
  pub connected: bool,
  /// Round-trip time of the PING (and probe key, when deep), in ms; `null` when it failed.
  pub latency_ms: Option<f64>,
  /// The URL, password masked.
  pub url: String,
  /// `redis` when calls go to Redis, `fallback` when they go to the in-memory fallback.
  pub mode: String,
  /// `standalone`, `cluster` or `sentinel`.
  pub topology: String,
  /// What went wrong, masked; absent when healthy.
  pub error: Option<String>,
  /// With `deep`: server settings that put limits, locks and caches at risk (README,
  /// "Operations"); absent otherwise. The default value is absent.
  pub warnings: Option<Vec<crate::connection::advice::HealthWarning>>,
}

/// The native half of `RedisClient` (`lib/client.js` wraps it). Holds one connection to Redis.
#[napi]
pub struct NativeClient {
  pub(crate) inner: Arc<ClientInner>,
}

#[napi]
impl NativeClient {
  /// `optionsJson`: the options as JSON; `envJson`: the relevant environment variables as JSON;
  /// `logger`: receives one JSON line per event, or none to stay silent.
  #[napi(constructor)]
  pub fn new(
    options_json: Option<String>,
    env_json: Option<String>,
    logger: Option<Function<'_, String, ()>>,
  ) -> Result<Self> {
    let settings =
      crate::connection::config::from_js(options_json.as_deref(), env_json.as_deref())?;
    crate::log::init();
    let inner = ClientInner::new(settings)?;
    if let Some(f) = logger {
      let tsfn = f
        .build_threadsafe_function()
        .weak::<true>()
        .callee_handled::<false>()
        .build()?;
      crate::log::register(inner.id, Some(tsfn));
    }
    for w in &inner.settings.warnings {
      tracing::warn!(target: "redis_guard", client = inner.id as u64, "{}", w);
    }
    inner.start();
    Ok(NativeClient { inner })
  }

  /// The last known connection state, without I/O.
  #[napi]
  pub fn is_available(&self) -> bool {
    self.inner.is_up()
  }

  /// The URL with the password masked.
  #[napi(getter)]
  pub fn url(&self) -> String {
    self.inner.settings.masked_url()
  }

  /// The command deadline, in ms.
  #[napi(getter)]
  pub fn command_timeout_ms(&self) -> u32 {
    self.inner.settings.command_timeout.as_millis() as u32
  }

  /// Counters: timeouts, errors, stateChanges, reconnects, fallbacks.
  #[napi]
  pub fn stats(&self) -> HashMap<String, f64> {
    let c = &self.inner.counters;
    let mut m = HashMap::new();
    m.insert("timeouts".into(), c.timeouts.load(Ordering::Relaxed) as f64);
    m.insert("errors".into(), c.errors.load(Ordering::Relaxed) as f64);
    m.insert(
      "stateChanges".into(),
      c.state_changes.load(Ordering::Relaxed) as f64,
    );
    m.insert(
      "reconnects".into(),
      c.reconnects.load(Ordering::Relaxed) as f64,
    );
    m.insert(
      "fallbacks".into(),
      c.fallbacks.load(Ordering::Relaxed) as f64,
    );
    m.insert(
      "orphansRemoved".into(),
      c.orphans_removed.load(Ordering::Relaxed) as f64,
    );
    m
  }

  /// Resolves `true` once connected, `false` if not connected within `timeoutMs`.
  #[napi]
  pub async fn ready(&self, timeout_ms: Option<u32>) -> bool {
    let t = Duration::from_millis(
      timeout_ms.unwrap_or(self.inner.settings.connect_timeout.as_millis() as u32) as u64,
    );
    self.inner.ready(t).await
  }

  /// PING (and with `deep`, SET/GET/DEL of a probe key), under the command deadline.
  #[napi]
  pub async fn health_check(&self, deep: Option<bool>) -> HealthResult {
    let me = &self.inner;
    let start = Instant::now();
    let mut error = None;
    let mut connected = false;
    if me.is_closed() {
      error = Some("the client is closed".to_string());
    } else if !me.redis.is_connected() {
      error = Some(me.last_error().unwrap_or_else(|| "not connected".into()));
    } else {
      match me.run(me.redis.ping::<String>(None)).await {
        Ok(_) => connected = true,
        // An ACL user without PING: the server answered (see `answered`).
        Err(e) if e.code == Code::Auth && e.message.contains("NOPERM") => connected = true,
        Err(e) => error = Some(e.message),
      }
    }
    let mut degraded = false;
    if connected && deep.unwrap_or(false) {
      let key = format!("redis-guard:health:{}:{}", me.id, rand::random::<u32>());
      let probe = async {
        let _: () = me
          .redis
          .set(&key, "1", Some(Expiration::PX(10_000)), None, false)
          .await?;
        let v: Option<String> = me.redis.get(&key).await?;
        let _: i64 = me.redis.del(&key).await?;
        Ok::<_, fred::error::Error>(v)
      };
      match me.run(probe).await {
        Ok(Some(v)) if v == "1" => {}
        Ok(_) => {
          degraded = true;
          error = Some("the probe key did not read back".into());
        }
        Err(e) => {
          degraded = true;
          error = Some(e.message);
        }
      }
    }
    let latency = start.elapsed().as_secs_f64() * 1000.0;
    let warnings = if connected && deep.unwrap_or(false) {
      Some(crate::connection::advice::check(me).await)
    } else {
      None
    };
    if connected && !me.is_up() {
      // Redis answers although the circuit is open: the probe will close it shortly.
      degraded = true;
    }
    if connected && latency > me.settings.command_timeout.as_secs_f64() * 500.0 {
      degraded = true;
      error.get_or_insert_with(|| format!("slow: {latency:.1} ms"));
    }
    HealthResult {
      status: if !connected {
        "unhealthy"
      } else if degraded {
        "degraded"
      } else {
        "healthy"
      }
      .into(),
      connected,
      latency_ms: if connected {
        Some((latency * 100.0).round() / 100.0)
      } else {
        None
      },
      url: me.settings.masked_url(),
      mode: if me.is_up() { "redis" } else { "fallback" }.into(),
      topology: me.settings.mode_name().into(),
      error: error.map(|e| me.settings.mask(&e)),
      warnings,
    }
  }

  /// The client's counters for `metrics()` as JSON (lib/metrics.js): per feature calls,
  /// batches, fallbacks and errors, the round-trip histogram, and the connection's counters.
  #[napi]
  pub fn metrics_json(&self) -> String {
    let me = &self.inner;
    let mut v = me.metrics.snapshot();
    let c = &me.counters;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    v["connection"] = serde_json::json!({
      "up": me.is_up(),
      "timeouts": g(&c.timeouts),
      "errors": g(&c.errors),
      "stateChanges": g(&c.state_changes),
      "reconnects": g(&c.reconnects),
      "fallbacks": g(&c.fallbacks),
      "orphansRemoved": g(&c.orphans_removed),
    });
    v.to_string()
  }

  /// Close the connection; later calls use the fallback policy or fail with `ERR_REDIS_GUARD_CLOSED`.
  #[napi]
  pub async fn close(&self) {
    self.inner.close().await
  }
}

#[cfg(test)]
mod tests {
  use super::SeedResolver;
  use fred::types::Resolve;

  fn resolver(seeds: &[(&str, u16)]) -> SeedResolver {
    SeedResolver {
      seeds: seeds.iter().map(|(h, p)| (h.to_string(), *p)).collect(),
      empty_host_seen: Default::default(),
    }
  }

  #[test]
  fn an_empty_host_is_the_seeds_host() {
    let r = resolver(&[("10.0.0.1", 7000), ("db.example", 7001), ("10.0.0.1", 7001)]);
    // A host that is there resolves as itself.
    assert_eq!(r.hosts_for("10.0.0.9", 7000), ["10.0.0.9"]);
    // Empty: the seeds on that port, each host once.
    assert_eq!(r.hosts_for("", 7000), ["10.0.0.1"]);
    assert_eq!(r.hosts_for("", 7001), ["db.example", "10.0.0.1"]);
    // No seed on that port (a port-forwarded seed): every seed's host.
    assert_eq!(r.hosts_for("", 6379), ["10.0.0.1", "db.example"]);
  }

  #[test]
  fn resolves_an_empty_host_to_the_seed_address() {
    let rt = tokio::runtime::Builder::new_current_thread()
      .enable_all()
      .build()
      .unwrap();
    let r = resolver(&[("127.0.0.1", 7000)]);
    let addrs = rt.block_on(r.resolve("127.0.0.1".into(), 7000)).unwrap();
    assert_eq!(addrs, ["127.0.0.1:7000".parse().unwrap()]);
    assert!(!r.empty_host_seen.load(std::sync::atomic::Ordering::Acquire));
    let addrs = rt.block_on(r.resolve("".into(), 7000)).unwrap();
    assert_eq!(addrs, ["127.0.0.1:7000".parse().unwrap()]);
    assert!(r.empty_host_seen.load(std::sync::atomic::Ordering::Acquire));
    let addrs = rt.block_on(r.resolve("::1".into(), 7001)).unwrap();
    assert_eq!(addrs, ["[::1]:7001".parse().unwrap()]);
    let e = rt
      .block_on(resolver(&[]).resolve("".into(), 7000))
      .unwrap_err();
    assert!(e.details().contains("empty host"), "{}", e.details());
  }
}
