//! No input makes the parser or the expander panic: mutated samples and
//! random bytes, with a fixed seed so a failure is reproducible.

use super::*;

/// A small deterministic generator (xorshift64*): no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        // n is small and non-zero at every call site.
        (self.next() % n.max(1) as u64) as usize
    }
}

const SAMPLES: [&str; 8] = [
    "# syntax=docker/dockerfile:1\n# escape=`\nFROM --platform=$P a AS b\nRUN x `\n  # c\n  y\n",
    "ARG A=1 B\nFROM ${A:-x}\nENV a=1 b=\"2 3\" c='4'\nENV legacy value here\nLABEL k=v\n",
    "FROM x\nRUN <<EOF\n#!/bin/sh\necho $HOME\nEOF\nRUN cat <<-'A' <<B > f\n\ta\n\tA\nb\nB\n",
    "FROM x\nCOPY --from=b --chown=1:1 --chmod=755 --link a <<H /d/\nbody\nH\nADD [\"a\", \"b\"] c\n",
    "FROM x\nHEALTHCHECK --interval=1m30s --retries=3 CMD [\"curl\", \"-f\"]\nHEALTHCHECK NONE\n",
    "FROM x\nSHELL [\"/bin/sh\", \"-c\"]\nCMD [\"a\"]\nENTRYPOINT b c\nEXPOSE 80/tcp\nVOLUME [\"/v\"]\n",
    "FROM x\nWORKDIR /w\nUSER u:g\nSTOPSIGNAL 9\nMAINTAINER me\nRUN [\"a\", \"b\"]\n",
    "FROM x\nRUN a \\\n\\\n# c\n\n b\nCOPY <<'E F' /x\nE F\n",
];

/// Characters that matter to the parser, to splice into samples.
const INTERESTING: [&str; 30] = [
    "\\", "`", "\"", "'", "$", "{", "}", "<<", "<<-", "\n", "\r\n", "-", "--", "[", "]", "#", "=",
    " ", "\t", ":", "${", "${A:-", "EOF\n", "\u{feff}", "\u{85}", "é", "\0", "*", "/", "?",
];

fn mutate(rng: &mut Rng, sample: &str) -> String {
    let mut chars: Vec<char> = sample.chars().collect();
    for _ in 0..=rng.below(6) {
        let at = rng.below(chars.len() + 1);
        match rng.below(4) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                chars.splice(at..at, piece.chars());
            }
            2 if !chars.is_empty() => {
                // Duplicate a stretch, to make repetition and nesting.
                let start = rng.below(chars.len());
                let end = (start + rng.below(40)).min(chars.len());
                let piece: Vec<char> = chars[start..end].to_vec();
                chars.splice(at..at, piece);
            }
            _ => {
                let c = char::from_u32(rng.next() as u32 % 0x80).unwrap_or('x');
                chars.insert(at, c);
            }
        }
    }
    chars.into_iter().collect()
}

/// Every raw word a parsed file holds, to feed the expander.
fn raw_words(file: &Containerfile) -> Vec<String> {
    let mut out: Vec<String> = file
        .global_args
        .iter()
        .filter_map(|a| a.default.clone())
        .collect();
    for stage in &file.stages {
        out.push(stage.base.clone());
        out.extend(stage.platform.clone());
        for step in &stage.steps {
            out.push(step.text.clone());
            out.extend(step.heredocs.iter().map(|h| h.body.clone()));
            match &step.instruction {
                Instruction::Env(kv) | Instruction::Label(kv) => {
                    out.extend(kv.iter().flat_map(|(k, v)| [k.clone(), v.clone()]));
                }
                Instruction::Workdir(w) | Instruction::User(w) | Instruction::StopSignal(w) => {
                    out.push(w.clone())
                }
                Instruction::Expose(ws) | Instruction::Volume(ws) => out.extend(ws.iter().cloned()),
                Instruction::Copy(c) | Instruction::Add(c) => {
                    out.push(c.dest.clone());
                    out.extend(c.chown.iter().chain(&c.chmod).chain(&c.from).cloned());
                }
                _ => {}
            }
        }
    }
    out
}

fn exercise(text: &str) {
    let lookup = |name: &str| (name.len() != 1).then(|| format!("v {name} *"));
    let Ok(file) = parse(text, "fuzz") else {
        return;
    };
    for escape in ['\\', '`'] {
        let expander = Expander {
            escape,
            lookup: &lookup,
        };
        for raw in raw_words(&file) {
            let _ = expander.word(&raw);
            let _ = expander.words(&raw);
            let _ = expander.heredoc(&raw);
        }
    }
}

#[test]
fn mutated_samples_never_panic() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut parsed = 0;
    for round in 0..6000 {
        let sample = SAMPLES[round % SAMPLES.len()];
        let text = mutate(&mut rng, sample);
        if parse(&text, "fuzz").is_ok() {
            parsed += 1;
        }
        exercise(&text);
    }
    // The mutations must not be so wild that nothing ever parses.
    assert!(parsed > 100, "only {parsed} mutated samples parsed");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0xdead_beef_1234_5678);
    for _ in 0..2000 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        exercise(&text);
        exercise(&format!("FROM x\nRUN {text}"));
    }
}

#[test]
fn random_words_never_panic_the_expander() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let alphabet: Vec<char> = "${}:-+?#%/\\`'\"ab *[]!^ \t\n_1".chars().collect();
    let lookup = |name: &str| (!name.is_empty()).then(|| "x*y".to_string());
    for _ in 0..20_000 {
        let len = rng.below(24);
        let raw: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        for escape in ['\\', '`'] {
            let expander = Expander {
                escape,
                lookup: &lookup,
            };
            let _ = expander.word(&raw);
            let _ = expander.words(&raw);
            let _ = expander.heredoc(&raw);
        }
    }
}
