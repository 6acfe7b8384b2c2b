//! Token attributions: GIM and the methods it is compared with, behind one API and one result type.

mod baseline;
mod batch;
mod integrated;
mod methods;
mod occlusion;
mod target;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

pub use baseline::{default_baseline_id, Baseline};
pub use batch::attribute_many;
pub use methods::{attribute, attribute_with, Engine};
pub use target::{text_ids as target_text_ids, Objective, TargetSpec};

use crate::error::{GimError, Result};
use crate::model::GimRules;

/// An attribution method. Its names (and aliases) are clap's: `--method` help, completion,
/// docs and [`Method::parse`] all read them from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// gradient × (input − baseline) with the GIM backward rules as configured
    Gim,
    /// gradient × (input − baseline), no rules
    #[value(aliases = ["plain", "grad"])]
    Gradient,
    /// gradient × input, no rules
    #[value(aliases = ["gxi", "gradient-x-input", "input-x-gradient"])]
    GradXInput,
    /// integrated gradients from the baseline (midpoint rule, batched steps)
    #[value(alias = "ig")]
    IntegratedGradients,
    /// f(x) − f(x with token i replaced by the baseline token)
    Occlusion,
    /// seeded uniform noise in [-1, 1] (a floor for faithfulness metrics)
    Random,
    /// gradient × (input − baseline) with norm freezing alone (the paper's ablation)
    FreezeNormOnly,
    /// gradient × (input − baseline) with the softmax temperature alone
    SoftmaxTOnly,
    /// gradient × (input − baseline) with the q/k/v gradient scales alone
    QkvOnly,
    /// gradient × (input − baseline) with the gate/up gradient scales alone
    GateUpOnly,
}

impl Method {
    /// Every method, in declaration order.
    pub fn all() -> &'static [Method] {
        <Method as ValueEnum>::value_variants()
    }

    /// The method's name (`integrated-gradients`), as clap and serde spell it.
    pub fn name(&self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// Parse a method name or alias (case, surrounding space and `_` for `-` do not matter).
    pub fn parse(s: &str) -> Result<Method> {
        let k = s.trim().to_ascii_lowercase().replace('_', "-");
        <Method as ValueEnum>::from_str(&k, false).map_err(|_| {
            let names: Vec<String> = Method::all().iter().map(Method::name).collect();
            GimError::input(format!(
                "unknown method `{s}` (choose from {})",
                names.join(", ")
            ))
        })
    }

    /// Gradient × (input − baseline) from one backward pass with [`Method::rules`]: every
    /// method but grad-x-input, integrated gradients, occlusion and random. These can be
    /// batched (`attribute_many`).
    pub fn times_baseline_delta(&self) -> bool {
        !matches!(
            self,
            Method::GradXInput | Method::IntegratedGradients | Method::Occlusion | Method::Random
        )
    }

    /// Whether the method has an edge version (`gim circuit --data --methods`): the gradient
    /// methods as EAP with their rules, integrated gradients as EAP-IG, and random scores;
    /// not grad-x-input and occlusion.
    pub fn scores_edges(&self) -> bool {
        !matches!(self, Method::GradXInput | Method::Occlusion)
    }

    /// The backward rules a gradient method uses (`gim_rules` for [`Method::Gim`]).
    pub fn rules(&self, gim_rules: &GimRules) -> GimRules {
        match self {
            Method::Gim => *gim_rules,
            Method::FreezeNormOnly => GimRules::freeze_norm_only(),
            Method::SoftmaxTOnly => GimRules {
                softmax_temperature: gim_rules.softmax_temperature.or(Some(2.0)),
                ..GimRules::off()
            },
            Method::QkvOnly => GimRules::qkv_only(),
            Method::GateUpOnly => GimRules::gate_up_only(),
            _ => GimRules::off(),
        }
    }
}

/// What to attribute.
#[derive(Debug, Clone)]
pub struct AttributeRequest {
    /// Input token ids (already including BOS where the tokenizer adds one).
    pub ids: Vec<u32>,
    pub target: TargetSpec,
    pub contrast: Option<TargetSpec>,
    /// Position whose prediction is explained (negative counts from the end; default last).
    pub position: Option<i64>,
    pub objective: Objective,
    pub baseline: Baseline,
    pub method: Method,
    /// Settings of the `gim` method.
    pub rules: GimRules,
    pub ig_steps: usize,
    pub seed: u64,
}

impl AttributeRequest {
    pub fn new(ids: Vec<u32>) -> Self {
        AttributeRequest {
            ids,
            target: TargetSpec::Argmax,
            contrast: None,
            position: None,
            objective: Objective::Logit,
            baseline: Baseline::Default,
            method: Method::Gim,
            rules: GimRules::gim(),
            ig_steps: 32,
            seed: 0,
        }
    }
}

/// The result of one attribution, shared by kernel, CLI, REPL and export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attribution {
    pub method: String,
    pub model_type: String,
    pub token_ids: Vec<u32>,
    pub tokens: Vec<String>,
    pub target_id: u32,
    pub target: String,
    pub contrast_id: Option<u32>,
    pub contrast: Option<String>,
    pub position: usize,
    /// `None` for a zero-embedding baseline.
    pub baseline_id: Option<u32>,
    pub attributions: Vec<f64>,
    /// The attributed quantity at the input: the target logit, logit difference or log-probability.
    pub target_logit: f64,
    pub objective: String,
    pub settings: GimRules,
    /// Anything the reader must know (multi-token targets, teacher forcing).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
}
