//! The hooked transformer: config, weight maps, hooks, GIM rules and the forward pass.

pub mod backward;
pub mod config;
pub mod gemm;
pub mod hooks;
pub mod init;
pub mod kernels;
pub(crate) mod layers;
pub mod ops;
pub mod pool;
pub mod row_kernels;
pub mod rules;
mod strips;
mod tile;
pub mod transformer;
mod transpose;
pub mod weights;

pub use config::ModelConfig;
pub use hooks::{Cache, Hook, HookPoint, Hooks, NoHooks, Patch};
pub use rules::GimRules;
pub use transformer::{ForwardOpts, Positions, Prefix, Transformer};

impl Transformer {
    /// Number of parameters (tied embeddings counted once).
    pub fn n_params(&self) -> usize {
        let w = &self.w;
        let lin = |l: &weights::LinearW| {
            l.w.elem_count() + l.b.as_ref().map(|b| b.elem_count()).unwrap_or(0)
        };
        let nrm = |n: &weights::NormW| {
            n.w.elem_count() + n.b.as_ref().map(|b| b.elem_count()).unwrap_or(0)
        };
        let mut n =
            w.embed.elem_count() + w.pos_embed.as_ref().map(|p| p.elem_count()).unwrap_or(0);
        if !self.cfg.tie_embeddings {
            n += w.unembed.elem_count();
        }
        n += nrm(&w.ln_final);
        for b in &w.blocks {
            n += nrm(&b.ln1) + nrm(&b.ln2);
            n += b.attn_post.as_ref().map(nrm).unwrap_or(0)
                + b.mlp_post.as_ref().map(nrm).unwrap_or(0);
            n += lin(&b.attn.q) + lin(&b.attn.k) + lin(&b.attn.v) + lin(&b.attn.o);
            n += b.attn.q_norm.as_ref().map(nrm).unwrap_or(0)
                + b.attn.k_norm.as_ref().map(nrm).unwrap_or(0);
            n += b.mlp.gate.as_ref().map(lin).unwrap_or(0) + lin(&b.mlp.up) + lin(&b.mlp.down);
        }
        n
    }
}
