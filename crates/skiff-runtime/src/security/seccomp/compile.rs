//! A profile, for a process's capabilities, into a classic BPF program.
//!
//! The BPF is generated here rather than by `seccompiler` (Firecracker's):
//! seccompiler builds a filter with one match action and one mismatch action,
//! and a docker profile mixes many (allow, several errnos, kill, trace, log)
//! with a default of its own; emulating that means one seccompiler filter per
//! action, stacked, which the kernel then runs in full for every syscall.
//! libseccomp would fit but is a C library the static guest and this
//! dependency-light host side do without. What is generated mirrors
//! libseccomp's choices where docker relies on them:
//!
//! * The audit architecture is checked first. An ABI the profile does not
//!   cover kills the process (`SECCOMP_RET_KILL_PROCESS`; libseccomp's
//!   default "bad arch" action kills the thread, which leaves a process
//!   half-alive), never the profile's default action, which may be "allow".
//! * On x86_64 the x32 ABI (syscall numbers with bit 30 set) shares the
//!   architecture value: with `SCMP_ARCH_X32` in the profile its calls are
//!   matched by their x32 numbers, and those unlisted get the default action;
//!   without it they are a bad architecture, as in libseccomp.
//! * The i386 ABI on x86_64 and arm on aarch64 get sections of their own
//!   when the profile names them (docker's `archMap` does).
//! * For each syscall number the first rule without conditions decides, and
//!   it overrides any with conditions; else the first rule (in profile order)
//!   whose conditions all hold; else the default action. A rule whose action
//!   is the default action is left out (runc does so); two conditions on the
//!   same argument make separate rules (runc and docker do so).
//! * Arguments are compared as unsigned 64-bit values, each half with its own
//!   32-bit instructions; on i386 and arm, whose arguments are 32 bits
//!   (zero-extended by the kernel), only the low half is loaded.
//!
//! Each ABI's section is a binary search over syscall number ranges (equal
//! neighbours merged), so a syscall costs about log2(ranges) jumps. Docker's
//! default profile with docker's capabilities compiles to 694 instructions on
//! x86_64 (three ABIs) and 496 on aarch64 (two), of which one native syscall
//! runs at most 17 (`program_sizes` in the tests).

use std::collections::BTreeMap;

use super::arch::{Abi, Arch, X32_SYSCALL_BIT};
use super::profile::{Action, Arg, KernelVersion, Op, Profile, Syscall};
use super::SeccompError;
use crate::security::capabilities::CapSet;

/// The most instructions the kernel takes in one program (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

// Classic BPF opcodes (<linux/bpf_common.h>).
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JGT_K: u16 = 0x05 | 0x20; // BPF_JMP | BPF_JGT | BPF_K
const JMP_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Seccomp's return values (<linux/seccomp.h>).
pub(super) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(super) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(super) const RET_TRAP: u32 = 0x0003_0000;
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
pub(super) const RET_TRACE: u32 = 0x7ff0_0000;
pub(super) const RET_LOG: u32 = 0x7ffc_0000;
pub(super) const RET_ALLOW: u32 = 0x7fff_0000;

/// The errno of `SCMP_ACT_ERRNO` (and data of `SCMP_ACT_TRACE`) without `errnoRet`.
const EPERM: u16 = 1;

// Offsets in struct seccomp_data: nr, arch, instruction_pointer, args[6]. Both
// supported architectures are little-endian: an argument's low half comes first.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const fn arg_low(index: u32) -> u32 {
    16 + 8 * index
}
const fn arg_high(index: u32) -> u32 {
    arg_low(index) + 4
}

/// One classic BPF instruction, the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SockFilter {
    /// The opcode.
    pub code: u16,
    /// How many instructions to skip when a jump's test holds.
    pub jt: u8,
    /// How many instructions to skip when it does not.
    pub jf: u8,
    /// The constant operand.
    pub k: u32,
}

impl SockFilter {
    const fn stmt(code: u16, k: u32) -> Self {
        SockFilter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Self {
        SockFilter { code, jt, jf, k }
    }

    const fn ret(value: u32) -> Self {
        Self::stmt(RET_K, value)
    }
}

/// A seccomp filter program: what `struct sock_fprog` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProgram {
    instructions: Vec<SockFilter>,
}

impl SeccompProgram {
    /// The instructions.
    pub fn instructions(&self) -> &[SockFilter] {
        &self.instructions
    }

    /// The instructions as the kernel reads them: 8 bytes each (`code`, `jt`,
    /// `jf`, `k`), in this host's byte order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.instructions.len() * 8);
        for i in &self.instructions {
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.push(i.jt);
            bytes.push(i.jf);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
        }
        bytes
    }
}

/// What a program is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The native architecture (the guest's, which is the host's).
    pub arch: Arch,
    /// The kernel the program runs under, for `minKernel`; `None` takes every
    /// `minKernel` as reached (skiff's guest kernels are recent).
    pub kernel: Option<KernelVersion>,
}

/// `profile` for a process with capabilities `caps`, on this host's
/// architecture (the guest's), every `minKernel` taken as reached.
pub fn compile(profile: &Profile, caps: CapSet) -> Result<SeccompProgram, SeccompError> {
    let arch = Arch::host().ok_or(SeccompError::UnsupportedHost(std::env::consts::ARCH))?;
    compile_for(profile, caps, &Target { arch, kernel: None })
}

/// `profile` for a process with capabilities `caps`, for `target`.
pub fn compile_for(
    profile: &Profile,
    caps: CapSet,
    target: &Target,
) -> Result<SeccompProgram, SeccompError> {
    profile.validate()?;
    let default = ret_value(profile.default_action, profile.default_errno_ret);
    let rules = applicable_rules(profile, caps, target, default)?;
    let abis = covered_abis(profile, target.arch);
    let has_x32 = abis.contains(&Abi::X32);

    // One section per audit architecture; x32 shares x86_64's.
    let mut sections: Vec<(u32, Vec<SockFilter>)> = Vec::new();
    for &abi in abis.iter().filter(|&&a| a != Abi::X32) {
        let mut by_nr = syscall_rules(&rules, abi);
        // The x32 ABI's rules join x86_64's, above X32_SYSCALL_BIT.
        let gaps = if abi == Abi::X86_64 {
            if has_x32 {
                by_nr.extend(syscall_rules(&rules, Abi::X32));
                vec![(0, default), (X32_SYSCALL_BIT, default)]
            } else {
                vec![(0, default), (X32_SYSCALL_BIT, RET_KILL_PROCESS)]
            }
        } else {
            vec![(0, default)]
        };
        let intervals = intervals(&by_nr, &gaps, abi.narrow_args());
        let mut code = vec![SockFilter::stmt(LD_W_ABS, DATA_NR)];
        code.extend(search_tree(&intervals));
        sections.push((abi.audit_arch(), code));
    }

    // ld arch; for each section: jeq its arch, ja to it; else kill.
    let header_len = 1 + 2 * sections.len() + 1;
    let mut program = vec![SockFilter::stmt(LD_W_ABS, DATA_ARCH)];
    let mut start = header_len;
    for (arch, code) in &sections {
        program.push(SockFilter::jump(JMP_JEQ_K, *arch, 0, 1));
        let at = program.len();
        program.push(SockFilter::stmt(JMP_JA, (start - at - 1) as u32));
        start += code.len();
    }
    program.push(SockFilter::ret(RET_KILL_PROCESS));
    for (_, code) in sections {
        program.extend(code);
    }
    if program.len() > BPF_MAXINSNS {
        return Err(SeccompError::TooLong { len: program.len() });
    }
    Ok(SeccompProgram {
        instructions: program,
    })
}

/// The seccomp return value of an action.
fn ret_value(action: Action, errno: Option<u16>) -> u32 {
    let data = u32::from(errno.unwrap_or(EPERM));
    match action {
        Action::Allow => RET_ALLOW,
        Action::Errno => RET_ERRNO | data,
        Action::Kill | Action::KillThread => RET_KILL_THREAD,
        Action::KillProcess => RET_KILL_PROCESS,
        Action::Trap => RET_TRAP,
        Action::Log => RET_LOG,
        Action::Trace => RET_TRACE | data,
    }
}

/// A rule that applies to the process, with its return value.
struct Applicable<'a> {
    rule: &'a Syscall,
    ret: u32,
}

/// The rules that apply, by docker's `includes`/`excludes` (capabilities,
/// the native architecture's Go name, `minKernel`), less those whose action
/// is the default.
fn applicable_rules<'a>(
    profile: &'a Profile,
    caps: CapSet,
    target: &Target,
    default: u32,
) -> Result<Vec<Applicable<'a>>, SeccompError> {
    let arch = target.arch.go_name();
    let reached = |min: Option<KernelVersion>| match (min, target.kernel) {
        (Some(min), Some(kernel)) => kernel >= min,
        _ => true,
    };
    let mut out = Vec::new();
    for (i, rule) in profile.syscalls.iter().enumerate() {
        let (inc, exc) = (&rule.includes, &rule.excludes);
        let excluded = exc.arches.iter().any(|a| a == arch)
            || !exc.cap_set(i, "excludes")?.intersection(caps).is_empty()
            || (exc.min_kernel.is_some() && reached(exc.min_kernel));
        let included = (inc.arches.is_empty() || inc.arches.iter().any(|a| a == arch))
            && inc.cap_set(i, "includes")?.difference(caps).is_empty()
            && reached(inc.min_kernel);
        let ret = ret_value(rule.action, rule.errno_ret);
        if included && !excluded && ret != default {
            out.push(Applicable { rule, ret });
        }
    }
    Ok(out)
}

/// The ABIs the program covers: the native one, and those of the
/// architecture that the profile names (`architectures`, or the `archMap`
/// entry of the native architecture).
fn covered_abis(profile: &Profile, arch: Arch) -> Vec<Abi> {
    let named: Vec<&str> = if !profile.architectures.is_empty() {
        profile.architectures.iter().map(String::as_str).collect()
    } else {
        profile
            .arch_map
            .iter()
            .find(|m| m.architecture == arch.scmp_name())
            .map(|m| {
                std::iter::once(m.architecture.as_str())
                    .chain(m.sub_architectures.iter().map(String::as_str))
                    .collect()
            })
            .unwrap_or_default()
    };
    let abis = arch.abis();
    let mut out = vec![abis[0].0];
    out.extend(
        abis[1..]
            .iter()
            .filter(|(_, name)| named.contains(name))
            .map(|(abi, _)| *abi),
    );
    out
}

/// What decides one syscall number.
#[derive(Default)]
struct NumberRules {
    /// The first rule without conditions.
    unconditional: Option<u32>,
    /// The rules with conditions, in profile order: all must hold.
    conditional: Vec<(Vec<Arg>, u32)>,
}

/// The applicable rules by syscall number of `abi`; names the ABI lacks are skipped.
fn syscall_rules(rules: &[Applicable], abi: Abi) -> BTreeMap<u32, NumberRules> {
    let table = abi.syscall_table();
    let mut by_nr: BTreeMap<u32, NumberRules> = BTreeMap::new();
    for Applicable { rule, ret } in rules {
        // Two conditions on one argument: each is a rule of its own.
        let args = &rule.args;
        let repeated = args
            .iter()
            .enumerate()
            .any(|(i, a)| args[..i].iter().any(|b| b.index == a.index));
        let chains: Vec<Vec<Arg>> = if repeated {
            args.iter().map(|a| vec![*a]).collect()
        } else {
            vec![args.clone()]
        };
        for name in rule.all_names() {
            let Some(&nr) = table.get(name) else {
                continue;
            };
            let entry = by_nr.entry(nr).or_default();
            if args.is_empty() {
                entry.unconditional.get_or_insert(*ret);
            } else {
                entry
                    .conditional
                    .extend(chains.iter().map(|c| (c.clone(), *ret)));
            }
        }
    }
    by_nr
}

/// The return value for an unlisted number: that of the last gap start at or below it.
fn gap_value(gaps: &[(u32, u32)], nr: u32) -> u32 {
    gaps.iter()
        .rev()
        .find(|(start, _)| *start <= nr)
        .map_or(RET_KILL_PROCESS, |(_, v)| *v)
}

/// A range of syscall numbers, from `start` to the next range's start, and its code.
enum Leaf {
    /// Every number of the range gets this value.
    Ret(u32),
    /// One listed number with conditions: the code ends in returns.
    Code(Vec<SockFilter>),
}

/// The ranges covering every number, listed numbers one each (or merged
/// with equal neighbours), the gaps between them split at `gaps`' starts;
/// `narrow`: the ABI's arguments are 32 bits.
fn intervals(
    by_nr: &BTreeMap<u32, NumberRules>,
    gaps: &[(u32, u32)],
    narrow: bool,
) -> Vec<(u32, Leaf)> {
    let mut out: Vec<(u32, Leaf)> = Vec::new();
    fn push(out: &mut Vec<(u32, Leaf)>, start: u32, leaf: Leaf) {
        if let (Some((_, Leaf::Ret(last))), Leaf::Ret(v)) = (out.last(), &leaf) {
            if last == v {
                return;
            }
        }
        out.push((start, leaf));
    }
    let gap = |out: &mut Vec<(u32, Leaf)>, from: u64, to: u64| {
        // Numbers from..to (exclusive), none listed.
        let mut at = from;
        while at < to {
            let value = gap_value(gaps, at as u32);
            let next = gaps
                .iter()
                .map(|(s, _)| u64::from(*s))
                .find(|&s| s > at)
                .map_or(to, |s| s.min(to));
            push(out, at as u32, Leaf::Ret(value));
            at = next;
        }
    };
    let mut next: u64 = 0;
    for (&nr, rules) in by_nr {
        gap(&mut out, next, u64::from(nr));
        let leaf = match rules.unconditional {
            Some(v) => Leaf::Ret(v),
            None => Leaf::Code(rules_code(rules, gap_value(gaps, nr), narrow)),
        };
        push(&mut out, nr, leaf);
        next = u64::from(nr) + 1;
    }
    gap(&mut out, next, 1 << 32);
    out
}

/// A binary search over the ranges, the syscall number in the accumulator.
fn search_tree(ranges: &[(u32, Leaf)]) -> Vec<SockFilter> {
    match ranges {
        [] => vec![SockFilter::ret(RET_KILL_PROCESS)],
        [(_, Leaf::Ret(v))] => vec![SockFilter::ret(*v)],
        [(_, Leaf::Code(code))] => code.clone(),
        _ => {
            let mid = ranges.len() / 2;
            let split = ranges[mid].0;
            let below = search_tree(&ranges[..mid]);
            let above = search_tree(&ranges[mid..]);
            let mut out = Vec::with_capacity(below.len() + above.len() + 2);
            match u8::try_from(below.len()) {
                Ok(skip) => out.push(SockFilter::jump(JMP_JGE_K, split, skip, 0)),
                Err(_) => {
                    // Too far for a conditional jump: through a `ja`.
                    out.push(SockFilter::jump(JMP_JGE_K, split, 0, 1));
                    out.push(SockFilter::stmt(JMP_JA, below.len() as u32));
                }
            }
            out.extend(below);
            out.extend(above);
            out
        }
    }
}

/// Where a jump of a condition's code goes.
#[derive(Clone, Copy)]
enum To {
    /// The next instruction.
    Next,
    /// The condition holds: past its code.
    Pass,
    /// It does not: past the rule's return.
    Fail,
}

/// One instruction of a condition's code, its jumps still symbolic.
#[derive(Clone, Copy)]
enum Step {
    Load(u32),
    And(u32),
    Jump(u16, u32, To, To),
    Goto(To),
}

/// How a condition tests the argument's high half, before the low one.
#[derive(Clone, Copy)]
enum High {
    /// Equal: go on to the low half; else fail (`==`) or pass (`!=`).
    Equal { otherwise: To },
    /// Above passes (`>`, `>=`), below fails; equal goes on to the low half.
    AbovePasses,
    /// Above fails (`<`, `<=`), below passes; equal goes on to the low half.
    AboveFails,
}

/// The code of `arg`'s condition; `narrow`: arguments are 32 bits, the high half zero.
fn condition(arg: &Arg, narrow: bool) -> Vec<Step> {
    use Step::{Goto, Jump, Load};
    use To::{Fail, Next, Pass};
    let (lo, hi) = (arg_low(arg.index), arg_high(arg.index));
    let (v_hi, v_lo) = ((arg.value >> 32) as u32, arg.value as u32);
    let (code, on_true, on_false, high) = match arg.op {
        Op::MaskedEq => return masked_condition(arg, narrow),
        Op::Eq => (JMP_JEQ_K, Pass, Fail, High::Equal { otherwise: Fail }),
        Op::Ne => (JMP_JEQ_K, Fail, Pass, High::Equal { otherwise: Pass }),
        Op::Gt => (JMP_JGT_K, Pass, Fail, High::AbovePasses),
        Op::Ge => (JMP_JGE_K, Pass, Fail, High::AbovePasses),
        Op::Lt => (JMP_JGE_K, Fail, Pass, High::AboveFails),
        Op::Le => (JMP_JGT_K, Fail, Pass, High::AboveFails),
    };
    let low = [Load(lo), Jump(code, v_lo, on_true, on_false)];
    if narrow {
        if v_hi != 0 {
            // Beyond every 32-bit argument: the answer is the same for all.
            let holds = arg.op.holds(0, arg.value, arg.value_two);
            return vec![Goto(if holds { Pass } else { Fail })];
        }
        return low.to_vec();
    }
    let mut steps = vec![Load(hi)];
    match high {
        High::Equal { otherwise } => steps.push(Jump(JMP_JEQ_K, v_hi, Next, otherwise)),
        High::AbovePasses => steps.extend([
            Jump(JMP_JGT_K, v_hi, Pass, Next),
            Jump(JMP_JEQ_K, v_hi, Next, Fail),
        ]),
        High::AboveFails => steps.extend([
            Jump(JMP_JGT_K, v_hi, Fail, Next),
            Jump(JMP_JEQ_K, v_hi, Next, Pass),
        ]),
    }
    steps.extend(low);
    steps
}

/// The code of a `SCMP_CMP_MASKED_EQ` condition: `arg & value == valueTwo & value`.
fn masked_condition(arg: &Arg, narrow: bool) -> Vec<Step> {
    use Step::{And, Goto, Jump, Load};
    use To::{Fail, Next, Pass};
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let (mask_hi, mask_lo) = split(arg.value);
    let (want_hi, want_lo) = split(arg.value_two & arg.value);
    let mut steps = Vec::new();
    if mask_hi != 0 {
        if narrow {
            // The high half is zero: it matches only a zero datum.
            if want_hi != 0 {
                return vec![Goto(Fail)];
            }
        } else {
            let hi = arg_high(arg.index);
            steps.extend([Load(hi), And(mask_hi), Jump(JMP_JEQ_K, want_hi, Next, Fail)]);
        }
    }
    let lo = arg_low(arg.index);
    steps.extend([Load(lo), And(mask_lo), Jump(JMP_JEQ_K, want_lo, Pass, Fail)]);
    steps
}

/// The code for one syscall number with conditional rules: each rule's
/// conditions, then its return; after the last, `fallback`.
///
/// Jumps stay within one rule's code, which is short: a rule has at most
/// six conditions (one per argument, `validate` sees to indexes 0 to 5;
/// repeated indexes make rules of one condition each), each of at most six
/// instructions, so every offset fits a jump's 8 bits.
fn rules_code(rules: &NumberRules, fallback: u32, narrow: bool) -> Vec<SockFilter> {
    let mut out = Vec::new();
    for (args, ret) in &rules.conditional {
        let conditions: Vec<Vec<Step>> = args.iter().map(|a| condition(a, narrow)).collect();
        let len: usize = conditions.iter().map(Vec::len).sum::<usize>() + 1;
        let mut at = 0;
        for steps in &conditions {
            let pass = at + steps.len();
            for step in steps {
                let offset = |to: To| -> u8 {
                    let target = match to {
                        To::Next => at + 1,
                        To::Pass => pass,
                        To::Fail => len,
                    };
                    debug_assert!(target - at - 1 <= usize::from(u8::MAX), "{len}");
                    (target - at - 1) as u8
                };
                out.push(match *step {
                    Step::Load(off) => SockFilter::stmt(LD_W_ABS, off),
                    Step::And(mask) => SockFilter::stmt(ALU_AND_K, mask),
                    Step::Jump(code, k, t, f) => SockFilter::jump(code, k, offset(t), offset(f)),
                    Step::Goto(to) => SockFilter::stmt(JMP_JA, u32::from(offset(to))),
                });
                at += 1;
            }
        }
        out.push(SockFilter::ret(*ret));
    }
    out.push(SockFilter::ret(fallback));
    out
}
