//! The container's processes and the guest's CPU and memory, read from
//! /proc: ListProcesses (`skiff top`) and Stats (`skiff stats`).
//!
//! Times in /proc are in clock ticks (`sysconf(_SC_CLK_TCK)`). A process's
//! `starttime` counts from boot on the CLOCK_BOOTTIME clock (the kernel
//! stores `ktime_get_boottime_ns()` at fork and prints it with
//! `nsec_to_clock_t`), the same clock as [`crate::clock::boottime_us`].

use std::collections::HashMap;
use std::io;
use std::path::Path;

use skiff_proto::v1::{GuestStats, ProcessInfo, ProcessList};

use crate::clock::boottime_us;
use crate::users;

/// Which processes are the container's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// PID 1 of a guest: every process but PID 1 and kernel threads.
    Guest,
    /// An ordinary process (tests): the descendants of this pid only.
    DescendantsOf(u32),
}

/// `PF_KTHREAD` in the flags field of /proc/<pid>/stat.
const PF_KTHREAD: u64 = 0x0020_0000;
/// kthreadd, the parent of every kernel thread.
const KTHREADD: u32 = 2;

/// The fields of /proc/<pid>/stat that skiff uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub tty_nr: u32,
    pub flags: u64,
    pub utime: u64,
    pub stime: u64,
    pub starttime: u64,
}

/// Parses /proc/<pid>/stat. The name is in parentheses and may itself hold
/// spaces and parentheses, so the fields after it are found from the last ')'.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_owned();
    // Fields from 3 (state) on; index 0 here is field 3.
    let f: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    let state = f.first()?.chars().next()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid: u32::try_from(num(1)?).ok()?,
        // tty_nr is printed signed but is a dev_t in its low 32 bits.
        tty_nr: f.get(4)?.parse::<i64>().ok()? as u32,
        flags: num(6)?,
        utime: num(11)?,
        stime: num(12)?,
        starttime: num(19)?,
    })
}

/// The effective uid from /proc/<pid>/status (as ps shows it).
pub fn parse_status_uid(text: &str) -> Option<u32> {
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Resident pages from /proc/<pid>/statm (its second field).
pub fn parse_statm_resident(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// /proc/<pid>/cmdline split on NUL; a process without one (a zombie, or
/// one that cleared it) is shown by its name in brackets, as ps does.
pub fn parse_cmdline(bytes: &[u8], comm: &str) -> Vec<String> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return vec![format!("[{comm}]")];
    }
    bytes
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The terminal of a `tty_nr` as ps names it; empty for none.
pub fn tty_name(tty_nr: u32) -> String {
    if tty_nr == 0 {
        return String::new();
    }
    // new_encode_dev: minor in bits 0-7 and 20-31, major in bits 8-19.
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xf_ff00);
    match major {
        // Unix98 ptys: 8 majors of 256 minors each.
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        5 if minor == 1 => "console".to_owned(),
        229 => format!("hvc{minor}"),
        _ => format!("{major}:{minor}"),
    }
}

/// The busy time of all CPUs together, in ticks, and the number of CPUs,
/// from /proc/stat: user+nice+system+irq+softirq+steal of its "cpu" line
/// (guest time is already part of user and nice).
pub fn parse_cpu(text: &str) -> Option<(u64, u32)> {
    let mut busy = None;
    let mut cpus = 0u32;
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        match f.next() {
            Some("cpu") => {
                let v: Vec<u64> = f.map(|s| s.parse().ok()).collect::<Option<_>>()?;
                // user nice system idle iowait irq softirq steal
                let get = |i: usize| v.get(i).copied().unwrap_or(0);
                busy = Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7));
            }
            Some(name)
                if name.len() > 3
                    && name.starts_with("cpu")
                    && name[3..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                cpus += 1;
            }
            _ => {}
        }
    }
    Some((busy?, cpus))
}

/// MemTotal and MemAvailable of /proc/meminfo, in bytes.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some(kib.saturating_mul(1024))
        })
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

fn ticks_per_second() -> u64 {
    // Linux's USER_HZ, which /proc uses, is 100 wherever AT_CLKTCK is missing.
    match rustix::param::clock_ticks_per_second() {
        0 => 100,
        n => n,
    }
}

fn ticks_to_us(ticks: u64, per_second: u64) -> u64 {
    u64::try_from(u128::from(ticks) * 1_000_000 / u128::from(per_second)).unwrap_or(u64::MAX)
}

/// Every process's stat; a process that exits while /proc is read is left out.
fn all_stats() -> io::Result<Vec<ProcStat>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(stat) = parse_stat(&text) {
            out.push(stat);
        }
    }
    Ok(out)
}

/// The container's processes in `stats`, by pid.
pub fn select(scope: Scope, mut stats: Vec<ProcStat>) -> Vec<ProcStat> {
    stats.sort_by_key(|s| s.pid);
    match scope {
        Scope::Guest => stats
            .into_iter()
            .filter(|s| {
                s.pid != 1 && s.pid != KTHREADD && s.ppid != KTHREADD && s.flags & PF_KTHREAD == 0
            })
            .collect(),
        Scope::DescendantsOf(root) => {
            let parent: HashMap<u32, u32> = stats.iter().map(|s| (s.pid, s.ppid)).collect();
            let descends = |mut pid: u32| {
                // Bounded: a pid reused while /proc was read can make a cycle.
                for _ in 0..=parent.len() {
                    match parent.get(&pid) {
                        Some(&p) if p == root => return true,
                        Some(&p) if p != 0 && p != pid => pid = p,
                        _ => return false,
                    }
                }
                false
            };
            stats.into_iter().filter(|s| descends(s.pid)).collect()
        }
    }
}

/// uid → name from an /etc/passwd (the first entry of a uid wins, as with
/// getpwuid).
fn user_names(passwd: &Path) -> HashMap<u32, String> {
    let text = std::fs::read(passwd)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut names = HashMap::new();
    for e in users::parse_passwd(&text) {
        names.entry(e.uid).or_insert(e.name);
    }
    names
}

/// ListProcesses. User names come from /etc/passwd: the container's once
/// SetupContainer has made its root ours.
pub fn list(scope: Scope) -> io::Result<ProcessList> {
    let tick = ticks_per_second();
    let page = rustix::param::page_size() as u64;
    let names = user_names(Path::new("/etc/passwd"));
    let mut processes = Vec::new();
    for s in select(scope, all_stats()?) {
        let dir = format!("/proc/{}", s.pid);
        // Each read may find the process gone: then it is left out.
        let Some(uid) = std::fs::read_to_string(format!("{dir}/status"))
            .ok()
            .and_then(|t| parse_status_uid(&t))
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("{dir}/cmdline")) else {
            continue;
        };
        let rss_pages = std::fs::read_to_string(format!("{dir}/statm"))
            .ok()
            .and_then(|t| parse_statm_resident(&t))
            .unwrap_or(0);
        processes.push(ProcessInfo {
            pid: s.pid,
            ppid: s.ppid,
            uid,
            user: names.get(&uid).cloned().unwrap_or_default(),
            state: s.state.to_string(),
            cpu_time_us: ticks_to_us(s.utime + s.stime, tick),
            rss_bytes: rss_pages.saturating_mul(page),
            started_us: ticks_to_us(s.starttime, tick),
            args: parse_cmdline(&cmdline, &s.comm),
            tty: tty_name(s.tty_nr),
        });
    }
    Ok(ProcessList {
        processes,
        now_us: boottime_us(),
    })
}

/// Stats.
pub fn stats(scope: Scope) -> io::Result<GuestStats> {
    let now_us = boottime_us();
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let (busy, cpus) = parse_cpu(&std::fs::read_to_string("/proc/stat")?)
        .ok_or_else(|| invalid("/proc/stat has no cpu line"))?;
    let (total, available) = parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?)
        .ok_or_else(|| invalid("/proc/meminfo lacks MemTotal or MemAvailable"))?;
    let processes = select(scope, all_stats()?).len();
    Ok(GuestStats {
        now_us,
        cpu_busy_us: ticks_to_us(busy, ticks_per_second()),
        cpus,
        memory_total_bytes: total,
        memory_available_bytes: available,
        processes: u32::try_from(processes).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, ppid: u32, flags: u64) -> ProcStat {
        ProcStat {
            pid,
            comm: format!("p{pid}"),
            state: 'S',
            ppid,
            tty_nr: 0,
            flags,
            utime: 0,
            stime: 0,
            starttime: 0,
        }
    }

    #[test]
    fn stat_with_a_hostile_name() {
        let text = "4242 (a) b (c)) R 17 4242 4242 34816 4242 4194560 100 0 0 0 \
                    250 75 0 0 20 0 1 0 123456 1000000 300 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                pid: 4242,
                comm: "a) b (c)".into(),
                state: 'R',
                ppid: 17,
                tty_nr: 34816,
                flags: 4194560,
                utime: 250,
                stime: 75,
                starttime: 123456,
            })
        );
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("x) y ("), None);
    }

    #[test]
    fn status_statm_cmdline() {
        let status = "Name:\tsleep\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_status_uid(status), Some(1001));
        assert_eq!(parse_status_uid("Name: x\n"), None);
        assert_eq!(parse_statm_resident("1000 250 100 1 0 50 0\n"), Some(250));
        assert_eq!(parse_statm_resident(""), None);
        assert_eq!(
            parse_cmdline(b"sleep\x00100\x00", "sleep"),
            ["sleep", "100"]
        );
        assert_eq!(parse_cmdline(b"a b\x00\x00c\x00", "x"), ["a b", "", "c"]);
        assert_eq!(parse_cmdline(b"", "kworker/0:1"), ["[kworker/0:1]"]);
        // setproctitle-style: no trailing NUL.
        assert_eq!(parse_cmdline(b"nginx: worker", "nginx"), ["nginx: worker"]);
    }

    #[test]
    fn tty_names() {
        assert_eq!(tty_name(0), "");
        assert_eq!(tty_name(136 << 8), "pts/0");
        assert_eq!(tty_name((136 << 8) | 5), "pts/5");
        // Minor 300 of the first pty major: 256 + 44 in the split encoding.
        assert_eq!(tty_name((136 << 8) | 44 | (1 << 20)), "pts/300");
        assert_eq!(tty_name((137 << 8) | 1), "pts/257");
        assert_eq!(tty_name((4 << 8) | 1), "tty1");
        assert_eq!(tty_name((4 << 8) | 64), "ttyS0");
        assert_eq!(tty_name((5 << 8) | 1), "console");
        assert_eq!(tty_name(229 << 8), "hvc0");
        assert_eq!(tty_name((7 << 8) | 3), "7:3");
    }

    #[test]
    fn cpu_and_memory() {
        let stat = "cpu  100 20 30 1000 50 5 6 7 40 0\n\
                    cpu0 50 10 15 500 25 2 3 3 20 0\n\
                    cpu1 50 10 15 500 25 3 3 4 20 0\n\
                    intr 1 2 3\nctxt 99\n";
        assert_eq!(parse_cpu(stat), Some((100 + 20 + 30 + 5 + 6 + 7, 2)));
        // An old kernel without steal.
        assert_eq!(
            parse_cpu("cpu 1 2 3 4 5 6 7\ncpu0 1 2 3 4 5 6 7\n"),
            Some((19, 1))
        );
        assert_eq!(parse_cpu("cpu0 1 2 3\n"), None);
        assert_eq!(parse_cpu("cpu x y\n"), None);
        let meminfo = "MemTotal:        2000 kB\nMemFree:  10 kB\nMemAvailable:     1500 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some((2000 * 1024, 1500 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(ticks_to_us(150, 100), 1_500_000);
        assert_eq!(ticks_to_us(u64::MAX, 100), u64::MAX);
    }

    #[test]
    fn guest_scope_leaves_out_init_and_kernel_threads() {
        let all = vec![
            stat(1, 0, 0),
            stat(2, 0, PF_KTHREAD),
            stat(3, 2, PF_KTHREAD),
            // A kernel thread whose flags were not read right still goes.
            stat(4, 2, 0),
            stat(90, 1, 0x400100),
            stat(91, 90, 0),
        ];
        let pids: Vec<u32> = select(Scope::Guest, all).iter().map(|s| s.pid).collect();
        assert_eq!(pids, [90, 91]);
    }

    #[test]
    fn host_scope_is_descendants_only() {
        let all = vec![
            stat(1, 0, 0),
            stat(50, 1, 0),
            stat(60, 50, 0),
            stat(61, 60, 0),
            stat(62, 61, 0),
            stat(70, 1, 0),
            stat(71, 70, 0),
            // A cycle (pid reuse while reading) must not hang.
            stat(80, 81, 0),
            stat(81, 80, 0),
        ];
        let pids: Vec<u32> = select(Scope::DescendantsOf(50), all)
            .iter()
            .map(|s| s.pid)
            .collect();
        assert_eq!(pids, [60, 61, 62]);
    }
}
