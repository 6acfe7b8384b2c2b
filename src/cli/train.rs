//! `gim train <task> --out DIR`: train a toy model with a known mechanism.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Result;
use crate::train::{train, Task, TrainOpts};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// induction or ioi
    pub task: Task,
    /// Output folder (a Hugging Face checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Optimiser steps (default depends on the task).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
}

pub fn run(a: Args) -> Result<()> {
    let mut o = TrainOpts::defaults(a.task, a.out.clone());
    o.seed = a.seed;
    o.batch = a.batch;
    o.lr = a.lr;
    if let Some(s) = a.steps {
        o.steps = s;
    }
    let bar = ProgressBar::new(o.steps as u64);
    if let Ok(st) = ProgressStyle::with_template("{bar:40} {pos}/{len} steps {elapsed} loss {msg}")
    {
        bar.set_style(st);
    }
    let r = train(a.task, &o, |step, loss| {
        bar.set_position(step as u64 + 1);
        if step % 10 == 0 {
            bar.set_message(format!("{loss:.4}"));
        }
    })?;
    bar.finish_and_clear();
    println!(
        "{:?}: {} steps in {:.0} s, final loss {:.4}, held-out accuracy {:.1}%{} → {}",
        r.task,
        r.steps,
        r.seconds,
        r.final_loss,
        100.0 * r.heldout_accuracy,
        r.train_template_accuracy
            .map(|a| format!(" (training templates {:.1}%)", 100.0 * a))
            .unwrap_or_default(),
        a.out.display()
    );
    Ok(())
}
