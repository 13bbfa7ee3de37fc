//! Weight initialisation schemes. The seed does not say which it used; the choice matters a
//! great deal for sigmoid networks, so every common scheme is offered.

use crate::linalg::Real;
use crate::rng::Rng;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// `w, b ~ U(−1/√I, 1/√I)`: PyTorch's `nn.Linear` default (Kaiming-uniform with a = √5).
    Uniform,
    /// Glorot uniform, `w ~ U(−√(6/(I+O)), √(6/(I+O)))`, `b = 0`.
    Xavier,
    /// Kaiming normal, `w ~ N(0, 2/I)`, `b = 0`.
    He,
    /// `w ~ N(0, σ²)`, `b = 0`.
    Normal(f64),
}

impl Init {
    /// Fill one layer's `w` (O, I) row by row, then `b` (O), from `rng`.
    pub fn fill<T: Real>(self, rng: &mut Rng, w: &mut [T], b: &mut [T], fan_in: usize, fan_out: usize) {
        assert_eq!(w.len(), fan_in * fan_out);
        assert_eq!(b.len(), fan_out);
        let (i, o) = (fan_in as f64, fan_out as f64);
        match self {
            Init::Uniform => {
                let bound = 1.0 / i.sqrt();
                w.iter_mut()
                    .for_each(|v| *v = T::from_f64(rng.uniform(-bound, bound)));
                b.iter_mut()
                    .for_each(|v| *v = T::from_f64(rng.uniform(-bound, bound)));
            }
            Init::Xavier => {
                let bound = (6.0 / (i + o)).sqrt();
                w.iter_mut()
                    .for_each(|v| *v = T::from_f64(rng.uniform(-bound, bound)));
                b.fill(T::ZERO);
            }
            Init::He => {
                let std = (2.0 / i).sqrt();
                w.iter_mut().for_each(|v| *v = T::from_f64(std * rng.normal()));
                b.fill(T::ZERO);
            }
            Init::Normal(std) => {
                w.iter_mut().for_each(|v| *v = T::from_f64(std * rng.normal()));
                b.fill(T::ZERO);
            }
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Uniform => f.write_str("uniform"),
            Init::Xavier => f.write_str("xavier"),
            Init::He => f.write_str("he"),
            Init::Normal(s) => write!(f, "normal:{s}"),
        }
    }
}

impl FromStr for Init {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Init::Uniform),
            "xavier" => Ok(Init::Xavier),
            "he" => Ok(Init::He),
            _ => {
                if let Some(sigma) = s.strip_prefix("normal:") {
                    match sigma.parse::<f64>() {
                        Ok(v) if v > 0.0 && v.is_finite() => Ok(Init::Normal(v)),
                        _ => Err(format!("in '{s}': σ must be a positive number, e.g. normal:0.01")),
                    }
                } else {
                    Err(format!(
                        "unknown initialisation '{s}', expected uniform, xavier, he or normal:SIGMA"
                    ))
                }
            }
        }
    }
}

crate::serde_via_str!(Init);
