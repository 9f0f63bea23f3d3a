//! The stages of a Containerfile, in order: which ones the target needs,
//! their variables (ARG scopes, ENV), and each instruction's effect on the
//! stage's image.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use skiff_oci::Platform;

use super::cache::{Cache, Key};
use super::image::ImageState;
use super::{BuildError, Built, Event, Host};
use crate::containerfile::{
    Command, Containerfile, Expander, Healthcheck, Instruction, Stage, Step,
};
use crate::context::Context;

/// docker's default SHELL.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// A built stage.
#[derive(Clone)]
pub(super) struct StageResult {
    pub image: ImageState,
    pub key: Key,
}

pub(super) struct Builder<'h, 'a> {
    pub host: &'h mut Host<'a>,
    pub file: &'h Containerfile,
    pub file_name: &'h str,
    pub context: &'h Context,
    pub cache: Cache,
    pub created: String,
    pub done: Vec<Option<StageResult>>,
    global: BTreeMap<String, String>,
    used_args: BTreeSet<String>,
    step_no: usize,
    total: usize,
    pub layer_steps: usize,
    pub cached: usize,
    /// The newest time a layer step of the target ran (now, or from the
    /// cache): the image's time when no SOURCE_DATE_EPOCH is set.
    newest: Option<std::time::SystemTime>,
}

/// A stage being built: its image, key, and variables.
pub(super) struct Current {
    pub image: ImageState,
    pub key: Key,
    pub platform: Platform,
    /// ARGs declared in this stage, with their values.
    pub args: BTreeMap<String, String>,
    pub shell: Vec<String>,
    cmd_set: bool,
}

impl Current {
    /// A variable as instructions see it: ENV wins over ARG, as in docker.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.image
            .env_var(name)
            .or_else(|| self.args.get(name).cloned())
    }
}

impl<'h, 'a> Builder<'h, 'a> {
    pub fn new(
        host: &'h mut Host<'a>,
        file: &'h Containerfile,
        file_name: &'h str,
        context: &'h Context,
    ) -> Self {
        let cache = Cache::new(host.store);
        let created = super::created(host.options.epoch);
        Self {
            host,
            file,
            file_name,
            context,
            cache,
            created,
            done: vec![None; file.stages.len()],
            global: BTreeMap::new(),
            used_args: BTreeSet::new(),
            step_no: 0,
            total: 0,
            layer_steps: 0,
            cached: 0,
            newest: None,
        }
    }

    pub fn saw_time(&mut self, t: &str) {
        if let Some(t) = skiff_runtime::time::parse_rfc3339(t) {
            self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
        }
    }

    pub fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.file_name)
    }

    pub fn run(mut self, target: usize) -> Result<Built, BuildError> {
        self.global = self.global_args()?;
        let needed = self.needed(target)?;
        self.total = needed
            .iter()
            .map(|&i| 1 + self.file.stages[i].steps.len())
            .sum();
        for &i in &needed {
            let result = self.stage(i)?;
            self.done[i] = Some(result);
        }
        for k in self.host.options.build_args.keys() {
            if !self.used_args.contains(k) && !predefined(k) {
                let msg = format!("build argument {k} was not used by any ARG");
                (self.host.events)(Event::Warning(&msg));
            }
        }
        let Some(mut result) = self.done[target].take() else {
            return Err(BuildError::Step("the target stage was not built".into()));
        };
        if !self.host.options.labels.is_empty() {
            let labels = labels_mut(&mut result.image);
            for (k, v) in &self.host.options.labels {
                labels.insert(k.clone(), json!(v));
            }
        }
        // An unchanged rebuild (every step from the cache) is the same image.
        let created = match (self.host.options.epoch, self.newest) {
            (None, Some(t)) => skiff_runtime::time::rfc3339(t),
            _ => self.created.clone(),
        };
        result.image.date_history(&created);
        let record = result.image.write(self.host.store, &created)?;
        Ok(Built {
            record,
            steps: self.step_no,
            cached: self.cached,
            layer_steps: self.layer_steps,
        })
    }

    /// ARGs before the first FROM, and the platform ARGs BuildKit defines.
    fn global_args(&mut self) -> Result<BTreeMap<String, String>, BuildError> {
        let mut vars = platform_args(&self.target_platform(), &Platform::host());
        for d in &self.file.global_args {
            let value = match self.host.options.build_args.get(&d.name) {
                Some(v) => {
                    self.used_args.insert(d.name.clone());
                    Some(v.clone())
                }
                None => match &d.default {
                    Some(raw) => Some(self.expand_with(&vars, raw, 1)?),
                    None => None,
                },
            };
            if let Some(v) = value {
                vars.insert(d.name.clone(), v);
            }
        }
        Ok(vars)
    }

    fn target_platform(&self) -> Platform {
        self.host
            .options
            .platform
            .clone()
            .unwrap_or_else(Platform::host)
    }

    fn expand_with(
        &self,
        vars: &BTreeMap<String, String>,
        raw: &str,
        line: usize,
    ) -> Result<String, BuildError> {
        let lookup = |k: &str| vars.get(k).cloned();
        Expander {
            escape: self.file.escape,
            lookup: &lookup,
        }
        .word(raw)
        .map_err(|e| BuildError::Step(format!("{}: {e}", self.at(line))))
    }

    /// The stage's base as written, expanded with the global ARGs.
    fn base_of(&self, stage: &Stage) -> Result<String, BuildError> {
        self.expand_with(&self.global, &stage.base, stage.line)
    }

    /// An earlier stage by name or number, as FROM and COPY --from name one.
    pub fn stage_ref(&self, name: &str, before: usize) -> Option<usize> {
        let by_name = self.file.stage_named(name).map(|(i, _)| i);
        let by_number = name.parse::<usize>().ok();
        by_name.or(by_number).filter(|&i| i < before)
    }

    /// The stages `target` depends on (FROM and COPY --from), in file order.
    fn needed(&self, target: usize) -> Result<Vec<usize>, BuildError> {
        let mut need = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !need.insert(i) {
                continue;
            }
            let stage = &self.file.stages[i];
            if let Some(j) = self.stage_ref(&self.base_of(stage)?, i) {
                todo.push(j);
            }
            for step in &stage.steps {
                if let Instruction::Copy(c) = &step.instruction {
                    // Expanded as far as the global ARGs go (a stage's own
                    // ARGs are not known before it runs).
                    let from = c
                        .from
                        .as_deref()
                        .map(|f| self.expand_with(&self.global, f, step.line))
                        .transpose()?;
                    if let Some(j) = from.and_then(|f| self.stage_ref(&f, i)) {
                        todo.push(j);
                    }
                }
            }
        }
        Ok(need.into_iter().collect())
    }

    pub fn event(&mut self, e: Event<'_>) {
        (self.host.events)(e)
    }

    fn next_step(&mut self, text: &str) {
        self.step_no += 1;
        let (number, total) = (self.step_no, self.total);
        self.event(Event::Step {
            number,
            total,
            text,
        });
    }

    fn stage(&mut self, index: usize) -> Result<StageResult, BuildError> {
        let stage = &self.file.stages[index];
        let base = self.base_of(stage)?;
        let platform = match &stage.platform {
            Some(p) => {
                let p = self.expand_with(&self.global, p, stage.line)?;
                Platform::parse(&p)
                    .map_err(|e| BuildError::Step(format!("{}: {e}", self.at(stage.line))))?
            }
            None => self.target_platform(),
        };
        self.event(Event::Stage {
            index,
            name: stage.name.as_deref(),
            base: &base,
        });
        let from_text = format!(
            "FROM {base}{}",
            stage
                .name
                .as_ref()
                .map(|n| format!(" AS {n}"))
                .unwrap_or_default()
        );
        self.next_step(&from_text);
        let (image, key) = if base.eq_ignore_ascii_case("scratch") {
            (
                ImageState::scratch(&platform),
                Key::base(&format!("scratch {platform}")),
            )
        } else if let Some(j) = self.stage_ref(&base, index) {
            let r = self.done[j].clone().ok_or_else(|| {
                BuildError::Step(format!(
                    "{}: stage {base} was not built",
                    self.at(stage.line)
                ))
            })?;
            (r.image, r.key)
        } else {
            let rec = (self.host.resolve)(&base, &platform)
                .map_err(|e| BuildError::BaseImage(format!("{}: {e}", self.at(stage.line))))?;
            (
                ImageState::from_image(self.host.store, &rec)?,
                Key::base(&rec.digest.to_string()),
            )
        };
        // SHELL is kept in the config (as docker does) and so inherited.
        let shell = image
            .config()
            .get("Shell")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect());
        let mut cur = Current {
            image,
            key,
            platform,
            args: BTreeMap::new(),
            shell,
            cmd_set: false,
        };
        for step in &stage.steps {
            if *self.host.interrupt.borrow() {
                return Err(BuildError::Interrupted);
            }
            self.next_step(&step.text);
            self.step(index, &mut cur, step)?;
        }
        Ok(StageResult {
            image: cur.image,
            key: cur.key,
        })
    }

    pub fn expander_word(
        &self,
        cur: &Current,
        raw: &str,
        line: usize,
    ) -> Result<String, BuildError> {
        let lookup = |k: &str| cur.lookup(k);
        Expander {
            escape: self.file.escape,
            lookup: &lookup,
        }
        .word(raw)
        .map_err(|e| BuildError::Step(format!("{}: {e}", self.at(line))))
    }

    fn expander_words(
        &self,
        cur: &Current,
        raw: &str,
        line: usize,
    ) -> Result<Vec<String>, BuildError> {
        let lookup = |k: &str| cur.lookup(k);
        Expander {
            escape: self.file.escape,
            lookup: &lookup,
        }
        .words(raw)
        .map_err(|e| BuildError::Step(format!("{}: {e}", self.at(line))))
    }

    fn step(&mut self, index: usize, cur: &mut Current, step: &Step) -> Result<(), BuildError> {
        let line = step.line;
        let created = self.created.clone();
        match &step.instruction {
            Instruction::Arg(decls) => {
                for d in decls {
                    let value = match self.host.options.build_args.get(&d.name) {
                        Some(v) => Some(v.clone()),
                        None => match &d.default {
                            Some(raw) => Some(self.expander_word(cur, raw, line)?),
                            None => self.global.get(&d.name).cloned(),
                        },
                    };
                    self.used_args.insert(d.name.clone());
                    if let Some(v) = value {
                        cur.args.insert(d.name.clone(), v);
                    }
                }
                // Not in the key here: a step that uses an ARG has its value
                // in its own key (RUN all of them), as docker misses at first use.
                cur.image.push(&created, &step.text, None);
            }
            Instruction::Env(pairs) => {
                // Every pair sees the variables as they were before the
                // instruction (docker: `ENV a=bye b=$a` takes the old a).
                let mut set = Vec::new();
                for (k, v) in pairs {
                    set.push((
                        self.expander_word(cur, k, line)?,
                        self.expander_word(cur, v, line)?,
                    ));
                }
                let mut shown = Vec::new();
                for (k, v) in set {
                    shown.push(format!("{k}={v}"));
                    cur.image.set_env(&k, &v);
                }
                cur.image
                    .push(&created, &format!("ENV {}", shown.join(" ")), None);
            }
            Instruction::Label(pairs) => {
                let mut out = Vec::new();
                for (k, v) in pairs {
                    out.push((
                        self.expander_word(cur, k, line)?,
                        self.expander_word(cur, v, line)?,
                    ));
                }
                let labels = labels_mut(&mut cur.image);
                for (k, v) in out {
                    labels.insert(k, json!(v));
                }
                cur.image.push(&created, &step.text, None);
            }
            Instruction::Workdir(raw) => {
                let w = self.expander_word(cur, raw, line)?;
                let dir = crate::imagefs::normalize(&if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", cur.image.working_dir())
                });
                cur.image
                    .config_mut()
                    .insert("WorkingDir".into(), json!(dir));
                self.workdir(cur, &dir, &step.text)?;
            }
            Instruction::User(raw) => {
                let u = self.expander_word(cur, raw, line)?;
                cur.image.config_mut().insert("User".into(), json!(u));
                cur.image.push(&created, &format!("USER {u}"), None);
            }
            Instruction::StopSignal(raw) => {
                let s = self.expander_word(cur, raw, line)?;
                cur.image.config_mut().insert("StopSignal".into(), json!(s));
                cur.image.push(&created, &format!("STOPSIGNAL {s}"), None);
            }
            Instruction::Expose(raw) => {
                let mut ports = Vec::new();
                for r in raw {
                    for p in self.expander_words(cur, r, line)? {
                        ports.push(if p.contains('/') {
                            p
                        } else {
                            format!("{p}/tcp")
                        });
                    }
                }
                let map = cur.image.config_object("ExposedPorts");
                for p in ports {
                    map.insert(p, json!({}));
                }
                cur.image.push(&created, &step.text, None);
            }
            Instruction::Volume(raw) => {
                let mut vols = Vec::new();
                for r in raw {
                    vols.extend(self.expander_words(cur, r, line)?);
                }
                let map = cur.image.config_object("Volumes");
                for v in vols {
                    map.insert(v, json!({}));
                }
                cur.image.push(&created, &step.text, None);
            }
            Instruction::Shell(argv) => {
                cur.shell = argv.clone();
                cur.image.config_mut().insert("Shell".into(), json!(argv));
                cur.image.push(&created, &step.text, None);
            }
            Instruction::Entrypoint(c) => {
                let argv = command_argv(c, &cur.shell);
                cur.image
                    .config_mut()
                    .insert("Entrypoint".into(), json!(argv));
                // docker: an ENTRYPOINT drops a CMD inherited from the base.
                if !cur.cmd_set {
                    cur.image.config_mut().remove("Cmd");
                }
                cur.image.push(&created, &step.text, None);
            }
            Instruction::Cmd(c) => {
                let argv = command_argv(c, &cur.shell);
                cur.image.config_mut().insert("Cmd".into(), json!(argv));
                cur.cmd_set = true;
                cur.image.push(&created, &step.text, None);
            }
            Instruction::Healthcheck(h) => {
                let v = healthcheck_json(h, &cur.shell);
                cur.image.config_mut().insert("Healthcheck".into(), v);
                cur.image.push(&created, &step.text, None);
            }
            Instruction::Copy(c) => self.copy(index, cur, step, c, false)?,
            Instruction::Add(c) => self.copy(index, cur, step, c, true)?,
            Instruction::Run(c) => self.run_step(cur, step, c)?,
        }
        Ok(())
    }
}

pub(super) fn predefined(k: &str) -> bool {
    const PROXY: &[&str] = &[
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "FTP_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
    ];
    PROXY.iter().any(|p| p.eq_ignore_ascii_case(k)) || k == "SOURCE_DATE_EPOCH"
}

/// BuildKit's automatic platform ARGs (global scope; a stage declares
/// `ARG TARGETARCH` to see one).
fn platform_args(target: &Platform, build: &Platform) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    m
}

pub(super) fn args_text(args: &BTreeMap<String, String>) -> String {
    args.iter().map(|(k, v)| format!("{k}={v}\0")).collect()
}

/// The exec form as is; the shell form through SHELL.
pub(super) fn command_argv(c: &Command, shell: &[String]) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

fn labels_mut(image: &mut ImageState) -> &mut serde_json::Map<String, Value> {
    image.config_object("Labels")
}

fn healthcheck_json(h: &Healthcheck, _shell: &[String]) -> Value {
    match h {
        Healthcheck::None => json!({"Test": ["NONE"]}),
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test: Vec<String> = match test {
                Command::Exec(v) => std::iter::once("CMD".to_owned())
                    .chain(v.iter().cloned())
                    .collect(),
                Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
            };
            let mut m = serde_json::Map::new();
            m.insert("Test".into(), json!(test));
            let ns = |d: &Option<std::time::Duration>| d.map(|d| json!(d.as_nanos() as u64));
            for (k, v) in [
                ("Interval", ns(interval)),
                ("Timeout", ns(timeout)),
                ("StartPeriod", ns(start_period)),
                ("StartInterval", ns(start_interval)),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            if let Some(r) = retries {
                m.insert("Retries".into(), json!(r));
            }
            Value::Object(m)
        }
    }
}
