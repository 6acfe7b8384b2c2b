//! `gim bench`: timings of forward passes and attribution methods, as ratios measured side by side.

use crate::args::{JsonArg, LoadArgs};
use crate::bench::{bench_model, random_model, save_random_gpt2, table, time_ms};
use crate::error::{GimError, Result};
use crate::loader;
use crate::session::{Recorder, Session};

#[derive(clap::Args, Debug)]
#[command(mut_arg("json", |a| a.help("Print JSON rows (one per line) instead of a table")))]
pub struct Args {
    /// Model shapes: gpt2-small, llama-1b, tiny.
    #[arg(long, value_delimiter = ',', default_value = "gpt2-small")]
    pub shape: Vec<String>,
    /// Sequence lengths.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    pub tokens: Vec<usize>,
    /// Methods besides the forward pass (attribution methods, or `edges` for edge attribution).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gradient,gim,integrated-gradients"
    )]
    pub methods: Vec<String>,
    /// Timed repetitions (median reported), after one untimed warm-up run when more than 1.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub json: JsonArg,
    /// Measure `%gim attribute` on a hot model against a fresh `gim attribute` process instead.
    #[arg(long)]
    pub hot_vs_fresh: bool,
    /// Real checkpoints to time instead of random shapes (folder, .gguf file, smollm2-135m, repo id).
    #[arg(long, value_delimiter = ',', conflicts_with = "hot_vs_fresh")]
    pub model: Vec<String>,
    /// The prompt a real checkpoint is timed on (default: a ~100-token English paragraph).
    #[arg(long, requires = "model")]
    pub prompt: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    let opts = a.load.opts()?;
    if a.hot_vs_fresh {
        for shape in &a.shape {
            for &t in &a.tokens {
                let (hot, fresh) = hot_vs_fresh(shape, t, a.reps)?;
                println!("{shape} {t} tokens: attribute on a hot model {hot:.0} ms, fresh process {fresh:.0} ms ({:.1}x)", fresh / hot);
            }
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for spec in &a.model {
        let t = std::time::Instant::now();
        let m = loader::load(spec, &opts)?;
        eprintln!(
            "{spec}: {:.1}M parameters, loaded in {:.2} s, peak RSS {:.0} MB",
            m.model.n_params() as f64 / 1e6,
            t.elapsed().as_secs_f64(),
            crate::bench::peak_rss_mb()
        );
        let text = a.prompt.as_deref().unwrap_or(crate::bench::BENCH_PARAGRAPH);
        let ids = m.tok.encode(text, true)?;
        let r = crate::bench::bench_ids(&m, &ids, &a.methods, a.reps)?;
        if !a.json.json {
            eprint!("{}", table(&r));
        }
        rows.extend(r);
    }
    let shapes: &[String] = if a.model.is_empty() { &a.shape } else { &[] };
    for shape in shapes {
        let m = random_model(shape, opts.dtype, &opts.device)?;
        eprintln!(
            "{shape}: {:.1}M parameters",
            m.model.n_params() as f64 / 1e6
        );
        for &t in &a.tokens {
            let r = bench_model(&m, t, &a.methods, a.reps)?;
            if !a.json.json {
                eprint!("{}", table(&r));
            }
            rows.extend(r);
        }
    }
    // one JSON row per line (a stream of rows, not one array)
    let mut json = false;
    for r in &rows {
        json = a.json.print(r)?;
    }
    if !json {
        println!("{}", table(&rows));
        print!("{}", crate::bench::growth(&rows));
        let var = |v: &str| std::env::var(v).unwrap_or_else(|_| "unset".into());
        println!(
            "threads: {} computing (GIM_THREADS={}, RAYON_NUM_THREADS={})",
            crate::model::pool::threads(),
            var("GIM_THREADS"),
            var("RAYON_NUM_THREADS")
        );
    }
    Ok(())
}

/// Round trip of `attribute` on a hot model (kept in a Session, as in the kernel) against a
/// fresh `gim attribute` process on the same input. Returns (hot ms, fresh ms). Here in the CLI,
/// not in `crate::bench`, because it drives a [`Session`].
pub fn hot_vs_fresh(shape: &str, tokens: usize, reps: usize) -> Result<(f64, f64)> {
    let dir = std::env::temp_dir().join(format!("gim-bench-{shape}-{}", std::process::id()));
    save_random_gpt2(shape, &dir)?;
    let prompt: Vec<String> = (0..tokens)
        .map(|i| format!("<tok{}>", 7 + (13 * i) % 900))
        .collect();
    let prompt = prompt.join(" ");
    let mut s = Session::new();
    let mut out = Recorder::default();
    s.run_magic(&format!("load {}", dir.display()), &mut out)
        .map_err(|e| GimError::input(e.message))?;
    let line = format!("attribute \"{prompt}\" --target-id 1 --baseline-id 0");
    let hot = time_ms(reps, || {
        s.run_magic(&line, &mut out)
            .map(|_| ())
            .map_err(|e| GimError::input(e.message))
    })?;
    let exe = std::env::current_exe().map_err(|e| GimError::Io(e.to_string()))?;
    let fresh = time_ms(reps, || {
        let st = std::process::Command::new(&exe)
            .args(["attribute", "--model"])
            .arg(&dir)
            .args([
                "--prompt",
                &prompt,
                "--target-id",
                "1",
                "--baseline-id",
                "0",
                "--json",
            ])
            .output()
            .map_err(|e| GimError::Io(e.to_string()))?;
        if !st.status.success() {
            return Err(GimError::input(
                String::from_utf8_lossy(&st.stderr).to_string(),
            ));
        }
        Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((hot, fresh))
}
