//! Learning-rate schedules: pure functions from the iteration number to α.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// `α_t = α`.
    Constant,
    /// `α_t = α · γ^⌊t / every⌋`: the seed's §2.3 is `step:0.85:250`.
    Step { gamma: f64, every: usize },
    /// `α_t = α · ½ (1 + cos(π t / T))`, from α at t = 0 down towards 0 at t = T.
    Cosine,
    /// One-cycle (Smith & Topin 2018, after PyTorch's `OneCycleLR` with its defaults): from
    /// α/25 up to α over the first `pct` of the run, then down to α/(25·10⁴) at t = T, both
    /// halves cosine-shaped. (PyTorch's phases end one step earlier, at pct·T − 1 and T − 1.)
    OneCycle { pct: f64 },
}

/// Half a cosine from `from` (at p = 0) to `to` (at p = 1).
fn cos_between(from: f64, to: f64, p: f64) -> f64 {
    to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
}

/// `schedule` after a linear warm-up: for the first `warmup` iterations the rate climbs linearly
/// to the schedule's own starting rate (α for constant, step and cosine; α/25 for one-cycle, so
/// that the two join without a jump), then the schedule runs over the remaining
/// `total − warmup` iterations as if they were the whole run.
///
/// ```
/// use mnist_mlp::optim::{Schedule, schedule::with_warmup};
/// assert_eq!(with_warmup(Schedule::Cosine, 0.1, 4, 0, 104), 0.025);
/// assert_eq!(with_warmup(Schedule::Cosine, 0.1, 4, 3, 104), 0.1);
/// assert_eq!(with_warmup(Schedule::Cosine, 0.1, 4, 4, 104), 0.1);
/// assert!((with_warmup(Schedule::Cosine, 0.1, 4, 54, 104) - 0.05).abs() < 1e-15);
/// let one_cycle = Schedule::OneCycle { pct: 0.3 };
/// assert!((with_warmup(one_cycle, 1.0, 4, 3, 104) - 0.04).abs() < 1e-15);
/// assert!((with_warmup(one_cycle, 1.0, 4, 4, 104) - 0.04).abs() < 1e-15);
/// ```
pub fn with_warmup(schedule: Schedule, base: f64, warmup: usize, t: usize, total: usize) -> f64 {
    let rest = total.saturating_sub(warmup);
    if t < warmup {
        schedule.lr_at(base, 0, rest) * (t + 1) as f64 / warmup as f64
    } else {
        schedule.lr_at(base, t - warmup, rest)
    }
}

impl Schedule {
    /// The learning rate for the update that takes iteration `t` (0-based) to `t + 1`, in a run
    /// of `total` iterations with base rate `base`.
    ///
    /// ```
    /// use mnist_mlp::optim::Schedule;
    /// // The seed report's §2.3: ×0.85 every 250 iterations.
    /// let s: Schedule = "step:0.85:250".parse().unwrap();
    /// assert_eq!(s.lr_at(0.01, 249, 8000), 0.01);
    /// assert!((s.lr_at(0.01, 250, 8000) - 0.0085).abs() < 1e-15);
    /// ```
    pub fn lr_at(&self, base: f64, t: usize, total: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { gamma, every } => base * gamma.powi((t / every) as i32),
            Schedule::Cosine => {
                let progress = t as f64 / total.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Schedule::OneCycle { pct } => {
                let total = total.max(1) as f64;
                let peak = (pct * total).max(1.0);
                let t = t as f64;
                if t < peak {
                    cos_between(base / 25.0, base, t / peak)
                } else {
                    cos_between(
                        base,
                        base / 25.0e4,
                        ((t - peak) / (total - peak).max(1.0)).min(1.0),
                    )
                }
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => f.write_str("constant"),
            Schedule::Step { gamma, every } => write!(f, "step:{gamma}:{every}"),
            Schedule::Cosine => f.write_str("cosine"),
            Schedule::OneCycle { pct } => write!(f, "onecycle:{pct}"),
        }
    }
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["constant"] => Ok(Schedule::Constant),
            ["cosine"] => Ok(Schedule::Cosine),
            ["onecycle"] => Ok(Schedule::OneCycle { pct: 0.3 }),
            ["onecycle", pct] => {
                let pct: f64 = pct
                    .parse()
                    .ok()
                    .filter(|p: &f64| *p > 0.0 && *p < 1.0)
                    .ok_or_else(|| format!("in '{s}': PCT must be a number in (0, 1)"))?;
                Ok(Schedule::OneCycle { pct })
            }
            ["step", gamma, every] => {
                let gamma: f64 = gamma
                    .parse()
                    .ok()
                    .filter(|g: &f64| *g > 0.0 && *g <= 1.0)
                    .ok_or_else(|| format!("in '{s}': GAMMA must be a number in (0, 1]"))?;
                let every: usize = every
                    .parse()
                    .ok()
                    .filter(|e| *e > 0)
                    .ok_or_else(|| format!("in '{s}': EVERY must be a positive integer"))?;
                Ok(Schedule::Step { gamma, every })
            }
            _ => Err(format!(
                "unknown schedule '{s}', expected constant, cosine, onecycle[:PCT] or step:GAMMA:EVERY (e.g. step:0.85:250)"
            )),
        }
    }
}

crate::serde_via_str!(Schedule);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_schedule_follows_the_seed_literally() {
        let s: Schedule = "step:0.85:250".parse().unwrap();
        let got: Vec<f64> = [0, 249, 250, 499, 500, 750, 7999]
            .iter()
            .map(|&t| s.lr_at(0.01, t, 8000))
            .collect();
        let want = [
            0.01,
            0.01,
            0.0085,
            0.0085,
            0.007225,
            0.00614125,
            0.01 * 0.85f64.powi(31),
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{got:?}");
        }
    }

    #[test]
    fn cosine_starts_at_base_and_halves_at_the_midpoint() {
        let s = Schedule::Cosine;
        assert_eq!(s.lr_at(0.1, 0, 100), 0.1);
        assert!((s.lr_at(0.1, 50, 100) - 0.05).abs() < 1e-15);
        assert!(s.lr_at(0.1, 99, 100) < 0.0001);
    }

    #[test]
    fn one_cycle_rises_from_a_25th_to_the_peak_then_anneals() {
        let s: Schedule = "onecycle:0.25".parse().unwrap();
        // 100 iterations, peak at t = 25.
        assert!((s.lr_at(1.0, 0, 100) - 0.04).abs() < 1e-15);
        assert!((s.lr_at(1.0, 25, 100) - 1.0).abs() < 1e-15);
        // Halfway up: the mean of 0.04 and 1; halfway down: the mean of 1 and 4e-6.
        assert!(
            (s.lr_at(1.0, 12, 100) - (0.04 + 0.96 * 0.5 * (1.0 - (std::f64::consts::PI * 0.48).cos()))).abs()
                < 1e-12
        );
        assert!(
            (s.lr_at(1.0, 25 + 75 / 2, 100)
                - (4e-6 + (1.0 - 4e-6) * 0.5 * (1.0 + (std::f64::consts::PI * 37.0 / 75.0).cos())))
            .abs()
                < 1e-12
        );
        assert!((s.lr_at(1.0, 100, 100) - 4e-6).abs() < 1e-15);
        assert_eq!(
            "onecycle".parse::<Schedule>().unwrap(),
            Schedule::OneCycle { pct: 0.3 }
        );
    }

    #[test]
    fn schedules_round_trip_through_text_and_reject_bad_input() {
        for text in ["constant", "cosine", "step:0.85:250", "onecycle:0.3"] {
            assert_eq!(text.parse::<Schedule>().unwrap().to_string(), text);
        }
        for bad in [
            "step",
            "step:0.85",
            "step:1.5:250",
            "step:0.5:0",
            "linear",
            "step:x:10",
            "onecycle:0",
            "onecycle:1.5",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad} accepted");
        }
    }
}
