//! Study specifications: a base configuration, a grid over any training option, explicit runs,
//! and a list of seeds, read from TOML and resolved into one validated `TrainConfig` per run.
//!
//! ```toml
//! name = "lr-sweep"
//! seeds = [0, 1]
//! [base]                      # any key of config.json's "train" object
//! activation = "relu"
//! eval_every = 100
//! [grid]                      # every combination of these values
//! lr = [0.1, 0.01]
//! init = ["uniform", "he"]
//! [[runs]]                    # optional explicit runs, each crossed with the grid
//! name = "step"
//! schedule = "step:0.85:250"
//! ```

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Keys of a `[[runs]]` entry that are not training options.
const RUN_META_KEYS: [&str; 2] = ["name", "reported_accuracy"];

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Training options shared by every run.
    #[serde(default)]
    pub base: toml::Table,
    /// Option → values; every combination becomes a run.
    #[serde(default)]
    pub grid: toml::Table,
    /// Explicit runs: training options plus an optional `name` and `reported_accuracy`.
    #[serde(default)]
    pub runs: Vec<toml::Table>,
    /// Every run is repeated with each seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One fully resolved run of a study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunPlan {
    /// Unique within the study; also the run's directory name.
    pub name: String,
    /// The name without the seed suffix: runs of one group differ only in their seed.
    pub group: String,
    pub config: TrainConfig,
    /// The accuracy the seed report gives for this run, as a fraction.
    pub reported_accuracy: Option<f64>,
}

/// One point of the grid: its name parts (`lr=0.1`) and the options it sets.
type Combo = (Vec<String>, Vec<(String, toml::Value)>);

fn spec_err(origin: &str, msg: impl Into<String>) -> Error {
    Error::flag(&format!("study spec {origin}"), msg)
}

impl StudySpec {
    pub fn from_file(path: &Path) -> Result<StudySpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<StudySpec> {
        let spec: StudySpec = toml::from_str(text).map_err(|e| spec_err(origin, e.to_string()))?;
        if spec.name.trim().is_empty() {
            return Err(spec_err(origin, "`name` must not be empty"));
        }
        if spec.seeds.is_empty() {
            return Err(spec_err(origin, "`seeds` must list at least one seed"));
        }
        for (key, values) in &spec.grid {
            match values.as_array() {
                Some(a) if !a.is_empty() => {}
                Some(_) => {
                    return Err(spec_err(
                        origin,
                        format!("grid.{key} is empty; give at least one value"),
                    ));
                }
                None => {
                    return Err(spec_err(origin, format!("grid.{key} must be a list of values")));
                }
            }
        }
        Ok(spec)
    }

    /// Every run, in a fixed order: explicit runs (or one unnamed run) × grid × seeds.
    pub fn resolve(&self, origin: &str) -> Result<Vec<RunPlan>> {
        let defaults = serde_json::to_value(TrainConfig::default()).expect("config serialises");
        let empty = toml::Table::new();
        let runs: Vec<&toml::Table> = if self.runs.is_empty() {
            vec![&empty]
        } else {
            self.runs.iter().collect()
        };
        let combos = self.combos();

        let mut plans = Vec::new();
        for (r, run) in runs.iter().enumerate() {
            for (label, sets) in &combos {
                let group = self.group_name(self.run_name(run, r, origin)?.as_deref(), label);
                let reported_accuracy = reported_accuracy(run, r, origin)?;
                for &seed in &self.seeds {
                    let mut value = self.options(&defaults, run, r, sets, origin)?;
                    let obj = value.as_object_mut().expect("an object");
                    obj.insert("seed".into(), seed.into());
                    let config = run_config(value, &group, origin)?;
                    let name = if self.seeds.len() > 1 {
                        format!("{group}-s{seed}")
                    } else {
                        group.clone()
                    };
                    plans.push(RunPlan {
                        name: sanitize(&name),
                        group: group.clone(),
                        config,
                        reported_accuracy,
                    });
                }
            }
        }
        check_distinct_names(&plans, origin)?;
        Ok(plans)
    }

    /// The grid's combinations, as (label, overrides), the last key varying fastest.
    fn combos(&self) -> Vec<Combo> {
        let mut combos: Vec<Combo> = vec![(vec![], vec![])];
        for (key, values) in &self.grid {
            let values = values.as_array().expect("checked in from_toml");
            combos = combos
                .into_iter()
                .flat_map(|(label, sets)| {
                    values.iter().map(move |v| {
                        let mut label = label.clone();
                        label.push(format!("{key}={}", short(v)));
                        let mut sets = sets.clone();
                        sets.push((key.clone(), v.clone()));
                        (label, sets)
                    })
                })
                .collect();
        }
        combos
    }

    /// The name a `[[runs]]` entry gives its runs: its `name`, `run<r>` if there are several, else none.
    fn run_name(&self, run: &toml::Table, r: usize, origin: &str) -> Result<Option<String>> {
        match run.get("name") {
            Some(toml::Value::String(n)) => Ok(Some(n.clone())),
            Some(_) => Err(spec_err(origin, format!("runs[{r}].name must be a string"))),
            None if self.runs.len() > 1 => Ok(Some(format!("run{r}"))),
            None => Ok(None),
        }
    }

    /// A group's name: the run's name and the grid label joined by commas, or the spec's name.
    fn group_name(&self, run_name: Option<&str>, label: &[String]) -> String {
        let mut name_parts: Vec<String> = run_name.map(String::from).into_iter().collect();
        name_parts.extend(label.iter().cloned());
        if name_parts.is_empty() {
            self.name.clone()
        } else {
            name_parts.join(",")
        }
    }

    /// The training options of one run as JSON: the defaults, then `base`, the grid point and the run's own.
    fn options(
        &self,
        defaults: &serde_json::Value,
        run: &toml::Table,
        r: usize,
        sets: &[(String, toml::Value)],
        origin: &str,
    ) -> Result<serde_json::Value> {
        let mut value = defaults.clone();
        let obj = value.as_object_mut().expect("an object");
        for (k, v) in &self.base {
            set_option(obj, defaults, k, v, "base", origin)?;
        }
        for (k, v) in sets {
            set_option(obj, defaults, k, v, "grid", origin)?;
        }
        for (k, v) in run.iter().filter(|(k, _)| !RUN_META_KEYS.contains(&k.as_str())) {
            set_option(obj, defaults, k, v, &format!("runs[{r}]"), origin)?;
        }
        Ok(value)
    }
}

/// A `[[runs]]` entry's `reported_accuracy`, if it gives one.
fn reported_accuracy(run: &toml::Table, r: usize, origin: &str) -> Result<Option<f64>> {
    match run.get("reported_accuracy") {
        None => Ok(None),
        Some(v) => Ok(Some(v.as_float().ok_or_else(|| {
            spec_err(
                origin,
                format!("runs[{r}].reported_accuracy must be a number (a fraction, e.g. 0.9489)"),
            )
        })?)),
    }
}

/// Set training option `k` to `v` in `obj`, refusing a key that is not a training option.
fn set_option(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    defaults: &serde_json::Value,
    k: &str,
    v: &toml::Value,
    wherein: &str,
    origin: &str,
) -> Result<()> {
    let json = serde_json::to_value(v).map_err(|e| spec_err(origin, format!("{wherein}.{k}: {e}")))?;
    if !obj.contains_key(k) {
        return Err(spec_err(
            origin,
            format!(
                "{wherein}: unknown training option `{k}`; known: {}",
                known_keys(defaults)
            ),
        ));
    }
    obj.insert(k.to_string(), json);
    Ok(())
}

/// The validated `TrainConfig` of run group `group` from its options as JSON.
fn run_config(value: serde_json::Value, group: &str, origin: &str) -> Result<TrainConfig> {
    let config: TrainConfig =
        serde_json::from_value(value).map_err(|e| spec_err(origin, format!("run '{group}': {e}")))?;
    config
        .validate()
        .map_err(|e| spec_err(origin, format!("run '{group}': {e}")))?;
    Ok(config)
}

/// Refuse two runs of the same name.
fn check_distinct_names(plans: &[RunPlan], origin: &str) -> Result<()> {
    let mut names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(spec_err(
            origin,
            format!("two runs are both named '{}'; give them distinct names", w[0]),
        ));
    }
    Ok(())
}

fn known_keys(defaults: &serde_json::Value) -> String {
    defaults
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(short).collect::<Vec<_>>().join("-"),
        other => other.to_string(),
    }
}

/// A name that is safe as a directory name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_crossed_with_runs_and_seeds_resolves_in_order() {
        let spec = StudySpec::from_toml(
            r#"
            name = "t"
            seeds = [0, 1]
            [base]
            iterations = 10
            [grid]
            lr = [0.1, 0.01]
            [[runs]]
            name = "sig"
            activation = "sigmoid"
            reported_accuracy = 0.9
            [[runs]]
            name = "relu"
            "#,
            "test",
        )
        .unwrap();
        let plans = spec.resolve("test").unwrap();
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sig,lr=0.1-s0",
                "sig,lr=0.1-s1",
                "sig,lr=0.01-s0",
                "sig,lr=0.01-s1",
                "relu,lr=0.1-s0",
                "relu,lr=0.1-s1",
                "relu,lr=0.01-s0",
                "relu,lr=0.01-s1"
            ]
        );
        assert_eq!(plans[0].config.iterations, 10);
        assert_eq!(plans[0].config.activation, crate::nn::Activation::Sigmoid);
        assert_eq!(plans[1].config.seed, 1);
        assert_eq!(plans[2].config.lr, 0.01);
        assert_eq!(plans[0].reported_accuracy, Some(0.9));
        assert_eq!(plans[4].reported_accuracy, None);
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let cases = [
            ("name = \"t\"\n[base]\nlrr = 0.1", "unknown training option `lrr`"),
            ("name = \"t\"\n[grid]\nlr = []", "grid.lr is empty"),
            ("name = \"t\"\n[grid]\nlr = 0.1", "must be a list"),
            ("name = \"t\"\n[base]\nlr = \"fast\"", "run 't'"),
            ("name = \"t\"\n[base]\nlr = -1.0", "--lr"),
            ("name = \"t\"\nsurprise = 1", "unknown field"),
            ("name = \"t\"\nseeds = []", "at least one seed"),
            ("[base]\nlr = 0.1", "missing field `name`"),
        ];
        for (text, want) in cases {
            let err = StudySpec::from_toml(text, "s.toml").and_then(|s| s.resolve("s.toml").map(|_| ()));
            let msg = err.expect_err(text).to_string();
            assert!(msg.contains(want), "{text:?}: {msg}");
        }
    }
}
