//! `rnnkit convert`: a model checkpoint with its tensors in another number format.

use clap::Args;
use rnnkit::engine::bf16::Precision;
use std::path::PathBuf;

#[derive(Args)]
pub struct ConvertArgs {
    /// A model checkpoint of any task (model.safetensors; a training state is refused).
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the converted checkpoint (atomically; may be --model itself).
    #[arg(long)]
    pub out: PathBuf,
    /// Number format of the tensors: bf16 (half the file, rounded to nearest even as
    /// PyTorch's `.to(torch.bfloat16)`; every rnnkit command loads it, widened to f32) or f32.
    #[arg(long, default_value = "bf16")]
    pub dtype: Precision,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ConvertArgs) -> anyhow::Result<()> {
    let c = rnnkit::checkpoint::convert(&a.model, &a.out, a.dtype)?;
    if a.json {
        let mut v = serde_json::to_value(&c)?;
        v["out"] = a.out.display().to_string().into();
        println!("{v}");
    } else {
        println!(
            "{}: {} tensors, {} parameters in {}, {} → {} bytes",
            a.out.display(),
            c.tensors,
            c.params,
            c.dtype.name(),
            c.bytes_in,
            c.bytes_out
        );
    }
    Ok(())
}
