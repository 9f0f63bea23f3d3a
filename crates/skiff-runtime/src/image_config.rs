//! The process to run: the image config (Entrypoint, Cmd, Env, WorkingDir,
//! User) merged with what the user gave on the command line, with docker's
//! rules.

use serde::Deserialize;

/// The parts of an OCI image config that decide the process.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ImageProcess {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    #[serde(rename = "StopSignal", default)]
    pub stop_signal: Option<String>,
    #[serde(rename = "Healthcheck", default)]
    pub healthcheck: Option<ImageHealthcheck>,
    #[serde(rename = "Labels", default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// `"80/tcp": {}`: the ports `-P` publishes.
    #[serde(rename = "ExposedPorts", default)]
    pub exposed_ports: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// docker's `Healthcheck` in an image config (durations in nanoseconds; 0 or
/// missing: the default).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
pub struct ImageHealthcheck {
    /// `["NONE"]`, `["CMD", arg…]` or `["CMD-SHELL", "command"]`.
    #[serde(rename = "Test", default)]
    pub test: Vec<String>,
    #[serde(rename = "Interval", default)]
    pub interval: u64,
    #[serde(rename = "Timeout", default)]
    pub timeout: u64,
    #[serde(rename = "StartPeriod", default)]
    pub start_period: u64,
    #[serde(rename = "Retries", default)]
    pub retries: u32,
}

#[derive(Deserialize)]
struct ConfigDoc {
    #[serde(default)]
    config: Option<ImageProcess>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
}

impl ConfigDoc {
    /// Refuses an image this host's VMs cannot run (linux/amd64 guests only).
    fn check_platform(&self) -> Result<(), ConfigError> {
        let os = self.os.as_deref().unwrap_or("linux");
        let arch = self.architecture.as_deref().unwrap_or("amd64");
        if os != "linux" || arch != "amd64" {
            return Err(ConfigError::Platform(format!("{os}/{arch}")));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("image config is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no command: the image has no Entrypoint or Cmd; give one after the image name")]
    NoCommand,
    #[error("the image is for {0}; skiff's VMs run linux/amd64 (pull another platform with --platform linux/amd64)")]
    Platform(String),
    #[error("environment variable {0:?}: name must not be empty or contain '='")]
    BadEnv(String),
}

impl ImageProcess {
    /// From the bytes of the image config blob.
    pub fn parse(config_blob: &[u8]) -> Result<Self, ConfigError> {
        let doc: ConfigDoc = serde_json::from_slice(config_blob)?;
        Ok(doc.config.unwrap_or_default())
    }

    /// [`ImageProcess::parse`] for an image skiff's VMs can run: refuses
    /// anything but linux/amd64.
    pub fn parse_runnable(config_blob: &[u8]) -> Result<Self, ConfigError> {
        let doc: ConfigDoc = serde_json::from_slice(config_blob)?;
        doc.check_platform()?;
        Ok(doc.config.unwrap_or_default())
    }
}

/// What the user asked for on top of the image.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--entrypoint`: replaces the image's Entrypoint and drops its Cmd
    /// (as docker does). An empty string clears the entrypoint.
    pub entrypoint: Option<String>,
    /// Arguments after the image name: replace Cmd.
    pub args: Vec<String>,
    /// `-e KEY=VALUE`, or `-e KEY` to pass the caller's value (skipped when unset).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

/// The merged process: argv, environment, working directory, user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
}

pub fn merge(
    image: &ImageProcess,
    o: &Overrides,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Process, ConfigError> {
    let mut args: Vec<String> = match &o.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => image.entrypoint.clone().unwrap_or_default(),
    };
    if !o.args.is_empty() {
        args.extend(o.args.iter().cloned());
    } else if o.entrypoint.is_none() {
        args.extend(image.cmd.clone().unwrap_or_default());
    }
    if args.is_empty() {
        return Err(ConfigError::NoCommand);
    }

    let mut env: Vec<String> = image.env.clone().unwrap_or_default();
    for e in &o.env {
        let (key, value) = match e.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (e.clone(), lookup_env(e)),
        };
        if key.is_empty() {
            return Err(ConfigError::BadEnv(e.clone()));
        }
        let Some(value) = value else { continue };
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|x| x.split('=').next() == Some(key.as_str()))
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }

    let cwd = o
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    let user = o
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    Ok(Process {
        args,
        env,
        cwd,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> ImageProcess {
        ImageProcess::parse(
            br#"{"architecture":"amd64","config":{"Entrypoint":["/bin/tini","--"],"Cmd":["sh"],"Env":["PATH=/bin","A=img"],"WorkingDir":"/srv","User":"app"}}"#,
        )
        .unwrap()
    }
    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn image_defaults() {
        let p = merge(&img(), &Overrides::default(), &none).unwrap();
        assert_eq!(p.args, ["/bin/tini", "--", "sh"]);
        assert_eq!(p.env, ["PATH=/bin", "A=img"]);
        assert_eq!(p.cwd, "/srv");
        assert_eq!(p.user, "app");
    }

    #[test]
    fn args_replace_cmd_keep_entrypoint() {
        let o = Overrides {
            args: vec!["echo".into(), "hi".into()],
            ..Default::default()
        };
        assert_eq!(
            merge(&img(), &o, &none).unwrap().args,
            ["/bin/tini", "--", "echo", "hi"]
        );
    }

    #[test]
    fn entrypoint_override_drops_cmd() {
        let o = Overrides {
            entrypoint: Some("/bin/sh".into()),
            ..Default::default()
        };
        assert_eq!(merge(&img(), &o, &none).unwrap().args, ["/bin/sh"]);
        let o = Overrides {
            entrypoint: Some("/bin/sh".into()),
            args: vec!["-c".into(), "id".into()],
            ..Default::default()
        };
        assert_eq!(
            merge(&img(), &o, &none).unwrap().args,
            ["/bin/sh", "-c", "id"]
        );
        let o = Overrides {
            entrypoint: Some(String::new()),
            args: vec!["ls".into()],
            ..Default::default()
        };
        assert_eq!(merge(&img(), &o, &none).unwrap().args, ["ls"]);
    }

    #[test]
    fn env_overrides_by_key_and_passes_host_values() {
        let o = Overrides {
            env: vec![
                "A=1".into(),
                "B=x=y".into(),
                "HOSTVAR".into(),
                "UNSET".into(),
            ],
            ..Default::default()
        };
        let host = |k: &str| (k == "HOSTVAR").then(|| "h".to_owned());
        let p = merge(&img(), &o, &host).unwrap();
        assert_eq!(p.env, ["PATH=/bin", "A=1", "B=x=y", "HOSTVAR=h"]);
        let bad = Overrides {
            env: vec!["=v".into()],
            ..Default::default()
        };
        assert!(matches!(
            merge(&img(), &bad, &none),
            Err(ConfigError::BadEnv(_))
        ));
    }

    #[test]
    fn workdir_user_and_missing_config() {
        let o = Overrides {
            workdir: Some("/tmp".into()),
            user: Some("1000:1000".into()),
            args: vec!["true".into()],
            ..Default::default()
        };
        let bare = ImageProcess::parse(br#"{"architecture":"amd64"}"#).unwrap();
        let p = merge(&bare, &o, &none).unwrap();
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/tmp", "1000:1000"));
        assert!(matches!(
            merge(&bare, &Overrides::default(), &none),
            Err(ConfigError::NoCommand)
        ));
        assert!(ImageProcess::parse(b"{").is_err());
        assert!(ImageProcess::parse_runnable(br#"{"os":"linux","architecture":"amd64"}"#).is_ok());
        let e =
            ImageProcess::parse_runnable(br#"{"os":"linux","architecture":"arm64"}"#).unwrap_err();
        assert!(e.to_string().contains("linux/arm64"), "{e}");
    }
}
