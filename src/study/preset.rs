//! Presets: named training configurations kept as study specs in `studies/presets/`, so that
//! `train --preset NAME` and `study --spec studies/presets/NAME.toml` run the same thing.

use super::spec::StudySpec;
use crate::config::TrainConfig;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// ≥ 98.5% on MNIST in about two minutes on two cores.
    Fast,
    /// As high as a plain MLP gets in about twenty minutes on two cores.
    Best,
}

crate::named_enum!(Preset, "preset", {
    Preset::Fast => "fast",
    Preset::Best => "best",
});

impl Preset {
    /// The preset's study spec, as committed in `studies/presets/`.
    pub fn spec_text(self) -> &'static str {
        match self {
            Preset::Fast => include_str!("../../studies/presets/fast.toml"),
            Preset::Best => include_str!("../../studies/presets/best.toml"),
        }
    }

    pub fn origin(self) -> String {
        format!("studies/presets/{self}.toml")
    }

    /// The preset's training configuration (its spec's single run).
    pub fn config(self) -> Result<TrainConfig> {
        let origin = self.origin();
        let spec = StudySpec::from_toml(self.spec_text(), &origin)?;
        let mut plans = spec.resolve(&origin)?;
        if plans.len() != 1 {
            return Err(Error::flag(
                "--preset",
                format!("{origin} must describe exactly one run, it has {}", plans.len()),
            ));
        }
        Ok(plans.remove(0).config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_resolves_to_one_valid_configuration() {
        for p in [Preset::Fast, Preset::Best] {
            let cfg = p.config().unwrap();
            cfg.validate().unwrap();
            assert_eq!(cfg.hidden, vec![800, 800]);
            assert!(cfg.dropout > 0.0 && cfg.max_norm.is_some() && !cfg.augment.is_identity());
        }
        assert!(Preset::Best.config().unwrap().iterations > Preset::Fast.config().unwrap().iterations);
    }
}
