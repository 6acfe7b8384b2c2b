//! The four GIM backward rules (shared/GIM.md). Forward values never depend on them.

use serde::{Deserialize, Serialize};

use crate::error::{GimError, Result};

/// Backward-rule settings. `None` for a scale or the temperature means "rule off".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GimRules {
    /// Treat the norm statistic (std / rms, eps included) as a constant in every norm.
    pub freeze_norm: bool,
    /// Attention-softmax backward temperature (`None` or 1 = ordinary gradient).
    pub softmax_temperature: Option<f64>,
    pub q_scale: Option<f64>,
    pub k_scale: Option<f64>,
    pub v_scale: Option<f64>,
    pub gate_scale: Option<f64>,
    pub up_scale: Option<f64>,
}

impl Default for GimRules {
    fn default() -> Self {
        Self::gim()
    }
}

impl GimRules {
    /// The paper's defaults: all four rules on.
    pub fn gim() -> Self {
        GimRules {
            freeze_norm: true,
            softmax_temperature: Some(2.0),
            q_scale: Some(0.25),
            k_scale: Some(0.25),
            v_scale: Some(0.5),
            gate_scale: Some(0.5),
            up_scale: Some(0.5),
        }
    }

    /// Every rule off: the ordinary gradient.
    pub fn off() -> Self {
        GimRules {
            freeze_norm: false,
            softmax_temperature: None,
            q_scale: None,
            k_scale: None,
            v_scale: None,
            gate_scale: None,
            up_scale: None,
        }
    }

    pub fn freeze_norm_only() -> Self {
        GimRules {
            freeze_norm: true,
            ..Self::off()
        }
    }

    pub fn softmax_t_only() -> Self {
        GimRules {
            softmax_temperature: Some(2.0),
            ..Self::off()
        }
    }

    pub fn qkv_only() -> Self {
        let g = Self::gim();
        GimRules {
            q_scale: g.q_scale,
            k_scale: g.k_scale,
            v_scale: g.v_scale,
            ..Self::off()
        }
    }

    pub fn gate_up_only() -> Self {
        let g = Self::gim();
        GimRules {
            gate_scale: g.gate_scale,
            up_scale: g.up_scale,
            ..Self::off()
        }
    }

    pub(crate) fn temperature(&self) -> f64 {
        self.softmax_temperature.unwrap_or(1.0)
    }

    /// Reject NaN, infinite, negative or zero settings with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: Option<f64>, allow_zero: bool| -> Result<()> {
            if let Some(x) = v {
                if !x.is_finite() || x < 0.0 || (!allow_zero && x == 0.0) {
                    return Err(GimError::input(format!(
                        "{name} must be a finite {} number, got {x}",
                        if allow_zero {
                            "non-negative"
                        } else {
                            "positive"
                        }
                    )));
                }
            }
            Ok(())
        };
        check("softmax temperature", self.softmax_temperature, false)?;
        check("q scale", self.q_scale, true)?;
        check("k scale", self.k_scale, true)?;
        check("v scale", self.v_scale, true)?;
        check("gate scale", self.gate_scale, true)?;
        check("up scale", self.up_scale, true)
    }
}
