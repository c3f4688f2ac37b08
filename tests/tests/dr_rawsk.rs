//! Dump and restore of raw, ping and packet sockets: a `victim_rawsk` tree
//! that holds each kind checks after restore that names and options are
//! what they were, that its ICMP sockets still get echo replies and that
//! its packet socket on lo still receives a frame this test sends; and
//! refusals by name (a raw socket with a packet queued, a packet socket
//! with a ring or in a fanout group) that leave the victim as it was.
//!
//! This process is a child subreaper; tests run one at a time (restore
//! waits for any child); every task is killed by pid and reaped.
use engine::dump::{dump, DumpOptions};
use engine::restore::{restore, RestoreOptions};
use engine::sys::Pid;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const VICTIM: &str = env!("CARGO_BIN_EXE_victim_rawsk");
const ANSWER: Duration = Duration::from_secs(60);
static SERIAL: Mutex<()> = Mutex::new(());
const PING_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

struct Tree {
    log: std::path::PathBuf,
    pid: i32,
}

impl Tree {
    fn start(s: &crtools_tests::Scratch, mode: &str) -> Tree {
        let log = s.root.join("victim.log");
        let mut cmd = Command::new(VICTIM);
        cmd.arg(mode).arg(&log);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start victim");
        let t = Tree { log, pid: child.id() as i32 };
        std::mem::forget(child);
        t
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + ANSWER;
        loop {
            if let Some(l) = self.text().lines().find(|l| l.starts_with(prefix)) {
                return l.to_string();
            }
            assert!(Instant::now() < deadline, "no {prefix:?} line; log:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling a task of this test's tree.
        unsafe { libc::kill(self.pid, sig) };
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        reap_all();
    }
}

fn run(name: &str, body: impl FnOnce() + Send + 'static) {
    if !crtools_tests::require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static SUBREAPER: std::sync::Once = std::sync::Once::new();
    SUBREAPER.call_once(|| {
        // SAFETY: prctl on this process.
        assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    });
    crtools_tests::with_watchdog(name, 300, body, || "see the victim log".into());
}

fn reap_all() {
    loop {
        let mut st = 0;
        // SAFETY: reaping children of this process.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG | libc::__WALL) };
        if r <= 0 {
            return;
        }
    }
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + ANSWER;
    while Path::new(&format!("/proc/{pid}")).exists() {
        reap_all();
        assert!(Instant::now() < deadline, "pid {pid} still exists");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lets root make ping sockets (gid 0 in net.ipv4.ping_group_range) while
/// it lives; the range it found comes back on drop.
struct PingGroups(Option<String>);

impl PingGroups {
    fn allow_root() -> PingGroups {
        let old = std::fs::read_to_string(PING_RANGE).unwrap_or_default();
        let mut r = old.split_whitespace().map(|v| v.parse::<i64>().unwrap_or(1));
        let (lo, hi) = (r.next().unwrap_or(1), r.next().unwrap_or(0));
        if lo <= 0 && 0 <= hi {
            return PingGroups(None);
        }
        std::fs::write(PING_RANGE, "0 0").expect("set ping_group_range");
        PingGroups(Some(old))
    }
}

impl Drop for PingGroups {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = std::fs::write(PING_RANGE, old.trim());
        }
    }
}

/// Sends one frame of protocol 0x88b5 on lo.
fn send_frame() {
    // SAFETY: plain syscalls on a socket of this test.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
        let idx: i32 = std::fs::read_to_string("/sys/class/net/lo/ifindex").unwrap().trim().parse().unwrap();
        let mut a: libc::sockaddr_ll = std::mem::zeroed();
        a.sll_family = libc::AF_PACKET as u16;
        a.sll_protocol = 0x88b5u16.to_be();
        a.sll_ifindex = idx;
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&0x88b5u16.to_be_bytes());
        f.extend_from_slice(b"crtools-frame");
        let n = libc::sendto(
            fd,
            f.as_ptr() as *const _,
            f.len(),
            0,
            &a as *const _ as *const _,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(n, f.len() as isize, "send a frame: {}", std::io::Error::last_os_error());
        libc::close(fd);
    }
}

#[test]
fn raw_ping_and_packet_sockets_survive_and_work() {
    run("rawsk_all", || {
        let _ping = PingGroups::allow_root();
        let s = crtools_tests::Scratch::new("dr_rawsk", "all");
        let t = Tree::start(&s, "all");
        let ready = t.wait_line("ready ");
        assert_eq!(ready, "ready promisc=true");
        dump(&DumpOptions { pid: Pid(t.pid), dir: s.images(), ..Default::default() })
            .unwrap_or_else(|e| panic!("dump: {e}"));
        wait_gone(t.pid);
        let mut out = Vec::new();
        engine::show::show(
            &engine::show::ShowOptions { dir: Some(s.images()), file: None, contents: false, json: false },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&out);
        for want in ["rawsk.img", "packetsk.img", "PINGv6", "RAW", "promisc@lo", "127.0.0.2", "[::1]"] {
            assert!(text.contains(want), "show lacks {want:?}:\n{text}");
        }
        restore(&RestoreOptions { pid: Some(Pid(t.pid)), dir: s.images(), detach: true, ..Default::default() })
            .unwrap_or_else(|e| panic!("restore: {e}"));
        t.signal(libc::SIGUSR1);
        let deadline = Instant::now() + ANSWER;
        while !t.text().contains("packet-wait") && !t.text().contains("done ") {
            assert!(Instant::now() < deadline, "log:\n{}", t.text());
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.text().contains("packet-wait") {
            send_frame();
        }
        let done = t.wait_line("done ");
        assert_eq!(done, "done ok", "log:\n{}", t.text());
    });
}

/// The dump refuses `mode`'s socket naming it with `want`; the victim runs
/// on with its socket as it was.
fn refused(mode: &'static str, want: &'static str) {
    run(mode, move || {
        let s = crtools_tests::Scratch::new("dr_rawsk", mode);
        let t = Tree::start(&s, mode);
        t.wait_line("ready");
        let err = dump(&DumpOptions { pid: Pid(t.pid), dir: s.images(), ..Default::default() })
            .expect_err("dump must refuse");
        assert!(err.refused, "not a refusal: {err}");
        let msg = err.to_string();
        assert!(msg.contains(want) && msg.contains("socket:["), "{msg}");
        assert!(!s.images().join("inventory.img").exists());
        t.signal(libc::SIGUSR1);
        let done = t.wait_line("done ");
        assert_eq!(done, "done ok", "log:\n{}", t.text());
    });
}

#[test]
fn raw_socket_with_a_packet_queued_is_refused() {
    refused("queued", "packets queued for reading");
}

#[test]
fn packet_socket_with_a_ring_is_refused() {
    refused("ring", "PACKET_RX_RING");
}

#[test]
fn obsolete_sock_packet_socket_is_refused() {
    refused("spkt", "SOCK_PACKET");
}

#[test]
fn packet_socket_in_a_fanout_group_is_refused() {
    refused("fanout", "fanout group 4242");
}
