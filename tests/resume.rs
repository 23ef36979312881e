//! End-to-end tests of a run's life: resuming bit for bit (after SIGTERM, after SIGKILL at
//! random moments, to more epochs), guarded folders, failed saves, non-finite losses, bf16
//! kept on resume, training from a pipe.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// A run stopped part-way and resumed ends with the same weights as an uninterrupted run.
#[test]
fn resume_matches_uninterrupted_run() {
    let d = tmp("resume");
    let (t, v) = corpus(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    let (ts, vs) = (t.to_str().unwrap(), v.to_str().unwrap());
    let mut args = train_args(ts, vs, a.to_str().unwrap());
    args.extend(["--epochs", "2"]);
    assert!(run(&args).status.success());
    let mut args = train_args(ts, vs, b.to_str().unwrap());
    args.extend(["--epochs", "2", "--max-tokens", "700"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    resume_ends_where(&b, &a, &[]);
}

/// Resumes the stopped run in `b` and checks that its train state equals `a`'s (an
/// uninterrupted run), tensor for tensor, bit for bit.
fn resume_ends_where(b: &Path, a: &Path, more: &[&str]) {
    let mut args = vec![
        "lm",
        "train",
        "--resume",
        b.to_str().unwrap(),
        "--quiet",
        "--json",
    ];
    args.extend(more);
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let state = "train_state.safetensors";
    let (ta, tb) = (tensors(&a.join(state)), tensors(&b.join(state)));
    assert_eq!(ta.len(), tb.len());
    for ((na, da), (nb, db)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(da == db, "tensor {na} differs after resume");
    }
}

/// `--resume` keeps the run's thread count (the products split their sums by it, so
/// another count would not continue bit for bit) and takes a new `--epochs`, so a
/// finished run trains on: 2 epochs resumed to 3 end where 3 epochs in one go end.
#[test]
fn resume_keeps_threads_and_trains_on_to_more_epochs() {
    let d = tmp("more-epochs");
    let (t, v) = corpus(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    let (ts, vs) = (t.to_str().unwrap(), v.to_str().unwrap());
    for (out, epochs) in [(&a, "3"), (&b, "2")] {
        let mut args = train_args(ts, vs, out.to_str().unwrap());
        args.extend(["--epochs", epochs, "--threads", "2"]);
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    resume_ends_where(&b, &a, &["--epochs", "3"]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["threads"], 2);
    assert_eq!(config["run"]["train"]["threads"], 2);
    assert_eq!(config["run"]["train"]["epochs"], 3);
    let mut args = train_args(ts, vs, a.to_str().unwrap());
    args.extend(["--threads", "0", "--overwrite"]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("thread count from 1 to 1024"));
}

/// A run folder is not overwritten by accident, and two runs cannot write into one.
#[test]
fn run_folders_are_guarded() {
    let (out, ts, vs, os) = run_dir("guard");
    let mut args = train_args(&ts, &vs, &os);
    args.extend(["--epochs", "1"]);
    assert!(run(&args).status.success());
    assert_user_error(&run(&args), "holds a run already");
    let mut again = args.clone();
    again.push("--overwrite");
    assert!(run(&again).status.success());
    // A lock held by a live process (this test) refuses the folder.
    std::fs::write(out.join(".rnnkit.lock"), std::process::id().to_string()).unwrap();
    assert_user_error(&run(&again), "another rnnkit");
    // A stale lock (no such process) and a killed run's temporary files are cleared.
    std::fs::write(out.join(".rnnkit.lock"), "4000000").unwrap();
    std::fs::write(out.join(".model.safetensors.tmp123"), "x").unwrap();
    assert!(run(&again).status.success());
    assert!(!out.join(".model.safetensors.tmp123").exists());
    assert!(
        !out.join(".rnnkit.lock").exists(),
        "the lock goes with the run"
    );
}

/// SIGTERM saves the state and exits with 130; resuming ends with the weights of a run
/// that was never interrupted, bit for bit.
#[test]
fn sigterm_saves_and_resume_is_bit_identical() {
    let (out, ts, vs, os) = run_dir("sigterm");
    let whole = out.with_file_name("whole");
    let mut args = train_args(&ts, &vs, whole.to_str().unwrap());
    args.extend(["--epochs", "40", "--threads", "2"]);
    assert!(run(&args).status.success());
    let mut args = train_args(&ts, &vs, &os);
    args.extend(["--epochs", "40", "--threads", "2"]);
    let mut child = bin().args(&args).spawn().unwrap();
    // Wait for a few logged steps, then ask it to stop.
    let metrics = out.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 6 {
        assert!(t0.elapsed().as_secs() < 60, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    if status.code() == Some(0) {
        eprintln!("the run ended before the signal arrived; nothing to resume");
        return;
    }
    assert_eq!(status.code(), Some(130));
    let o = run(&["lm", "train", "--resume", &os, "--quiet", "--threads", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = "model.safetensors";
    assert!(
        tensors(&whole.join(model)) == tensors(&out.join(model)),
        "weights differ after an interrupted and resumed run"
    );
}

/// A diverging run stops at the step where the loss stops being finite (exit 3, the step
/// named), unless told to skip such steps.
#[test]
fn non_finite_loss_is_caught_where_it_appears() {
    let (_, ts, vs, os) = run_dir("nan");
    let base = train_args(&ts, &vs, &os);
    let mut args: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < base.len() {
        if ["--optim", "--lr"].contains(&base[i]) {
            i += 2;
            continue;
        }
        args.push(base[i]);
        i += 1;
    }
    args.extend([
        "--optim", "sgd", "--lr", "1e30", "--clip", "0", "--epochs", "2",
    ]);
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        (err.contains("not finite") || err.contains("diverged")) && err.contains("step"),
        "{err}"
    );
    // Adam at 1e30 keeps the loss finite (~1e29 a token), which is divergence all the
    // same: it used to end with exit 0 and a perplexity of null.
    let lr = base.iter().position(|&a| a == "--lr").unwrap() + 1;
    let mut adam = base.clone();
    adam[lr] = "1e30";
    adam.extend(["--epochs", "1", "--overwrite"]);
    let o = run(&adam);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("diverged") || err.contains("not finite"),
        "{err}"
    );
    // Skipping goes past the first bad step (several are logged); a run whose validation
    // never becomes finite ends without a model, and says so.
    args.extend(["--on-nan", "skip", "--overwrite"]);
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    let log = std::fs::read_to_string(Path::new(&os).join("metrics.jsonl")).unwrap();
    assert!(log.matches("non_finite").count() > 1, "{log}");
    if o.status.code() == Some(3) {
        assert!(err.contains("no model was saved"), "{err}");
    } else {
        assert!(o.status.success(), "{err}");
    }
}

/// The short version of tools/kill_harness.py: SIGKILL a run at pseudo-random moments
/// (mid-step, mid-validation, mid-save: it saves after every step), resume it each time,
/// and end with the weights and the metrics log of a run that was never killed.
#[test]
fn sigkill_at_random_moments_then_resume_is_bit_identical() {
    let (out, ts, vs, os) = run_dir("sigkill");
    let whole = out.with_file_name("whole");
    let extra = [
        "--epochs",
        "3",
        "--threads",
        "1",
        "--save-every",
        "1",
        "--eval-every",
        "7",
    ];
    let mut args = train_args(&ts, &vs, whole.to_str().unwrap());
    args.extend(extra);
    assert!(run(&args).status.success());
    let mut args = train_args(&ts, &vs, &os);
    args.extend(extra);
    let (mut kills, mut seed, mut finished) = (0, 12345u64, false);
    for _ in 0..40 {
        let resumable = out.join("train_state.safetensors").exists();
        let mut cmd = bin();
        match resumable {
            true => cmd.args(["lm", "train", "--resume", &os, "--quiet", "--threads", "1"]),
            false => cmd.args(&args).arg("--overwrite"),
        };
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if kills < 3 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let ms = 40 + (seed >> 33) % 400;
            std::thread::sleep(std::time::Duration::from_millis(ms));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "a resumed run failed: {status}");
        finished = true;
        break;
    }
    assert!(finished && kills > 0, "{kills} kills, finished {finished}");
    let model = "model.safetensors";
    assert!(
        tensors(&whole.join(model)) == tensors(&out.join(model)),
        "weights differ after {kills} kills"
    );
    // The log holds each step once, as the uninterrupted run's (timings aside).
    let log = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.retain(|k, _| k != "wall_s" && !k.ends_with("_per_s"));
                v
            })
            .collect()
    };
    let (a, b) = (log(&whole), log(&out));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "metrics.jsonl line {} after {kills} kills", i + 1);
    }
    assert_eq!(a.len(), b.len(), "metrics.jsonl lines after {kills} kills");
}

/// A save that fails (here a file-size limit, as a full disk would) stops the run with a
/// one-line error naming the file that still holds the last good state, which resumes.
#[test]
fn failed_save_keeps_the_last_good_state() {
    let (out, ts, vs, os) = run_dir("failsave");
    let mut args = train_args(&ts, &vs, &os);
    args.extend(["--epochs", "2", "--max-tokens", "700", "--threads", "1"]);
    assert!(run(&args).status.success());
    let state = out.join("train_state.safetensors");
    let before = std::fs::read(&state).unwrap();
    // Room for the log to grow, far below a checkpoint: every save of the resumed run fails.
    let size = |f: &str| std::fs::metadata(out.join(f)).unwrap().len();
    let limit = size("metrics.jsonl") + (64 << 10);
    assert!(
        limit < size("model.safetensors"),
        "the test model is too small"
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -f {}; exec {} lm train --resume {os} --quiet --threads 1",
            limit >> 10,
            env!("CARGO_BIN_EXE_rnnkit")
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("could not save") && err.contains("untouched"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "the good state changed"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let o = run(&["lm", "train", "--resume", &os, "--quiet", "--threads", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A pipe as the training file (`<(...)`), which can be read only once, trains like the
/// file itself; a folder is refused with one line.
#[test]
fn training_reads_a_pipe_and_refuses_a_folder() {
    let (out, ts, vs, os) = run_dir("pipe");
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec {} lm train --train <(cat {ts}) --valid <(cat {vs}) --tokenizer word --embed 8 --hidden 8 --batch-size 4 --bptt 8 --epochs 1 --threads 1 --quiet --json --out {os}",
            env!("CARGO_BIN_EXE_rnnkit")
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(last_json(&o)["valid_ppl"].as_f64().unwrap() > 1.0);
    let dir = out.parent().unwrap().to_str().unwrap().to_string();
    let mut args = train_args(&dir, &vs, &os);
    args.push("--overwrite");
    assert_user_error(&run(&args), "is a folder");
}

/// `--precision bf16` is part of the run: written to config.json, kept by `--resume` (the
/// resumed run ends bit for bit where an uninterrupted bf16 run ends), and close to fp32 in
/// quality; `bench` names the kernel that ran. On a CPU without bf16 products the option
/// runs fp32, and the test still holds.
#[test]
fn bf16_is_kept_on_resume_and_close_to_fp32() {
    let d = tmp("bf16");
    let (t, v) = corpus(&d);
    let (ts, vs) = (t.to_str().unwrap(), v.to_str().unwrap());
    let (a, b, f) = (d.join("a"), d.join("b"), d.join("f"));
    let bf16 = ["--epochs", "2", "--precision", "bf16"];
    let mut args = train_args(ts, vs, a.to_str().unwrap());
    args.extend(bf16);
    let oa = run(&args);
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["run"]["train"]["precision"], "bf16");
    let mut args = train_args(ts, vs, b.to_str().unwrap());
    args.extend(bf16);
    args.extend(["--max-tokens", "700"]);
    assert!(run(&args).status.success());
    resume_ends_where(&b, &a, &[]);
    // Quality: bf16 training ends at a sane perplexity (its trajectory is not fp32's, so
    // a tiny run is no place to compare the two), and one model evaluated with bf16
    // products scores within 1% of the same model in fp32.
    let pb = last_json(&oa)["valid_ppl"].as_f64().unwrap();
    assert!(pb.is_finite() && pb < 400.0, "bf16 valid ppl {pb}");
    let mut args = train_args(ts, vs, f.to_str().unwrap());
    args.extend(["--epochs", "2"]);
    assert!(run(&args).status.success());
    let model = f.join("model.safetensors");
    let eval = |p: &str| {
        let m = model.to_str().unwrap();
        let o = run(&[
            "lm",
            "eval",
            "--model",
            m,
            "--data",
            vs,
            "--precision",
            p,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        last_json(&o)["ppl"].as_f64().unwrap()
    };
    let (ef, eb) = (eval("f32"), eval("bf16"));
    assert!(
        (eb / ef - 1.0).abs() < 0.01,
        "eval ppl bf16 {eb} vs fp32 {ef}"
    );

    // A bf16 checkpoint on request: every tensor BF16 (the f32 values rounded to nearest
    // even), names and metadata kept, loaded by every command as f32; back to f32 exactly.
    let (small, back) = (d.join("small.safetensors"), d.join("back.safetensors"));
    let convert = |from: &Path, to: &Path, dtype: &str| {
        let o = run(&[
            "convert",
            "--model",
            from.to_str().unwrap(),
            "--out",
            to.to_str().unwrap(),
            "--dtype",
            dtype,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        last_json(&o)
    };
    let c = convert(&model, &small, "bf16");
    assert_eq!(c["dtype"], "bf16");
    let read = |f: &Path| std::fs::read(f).unwrap();
    let (fb, sb) = (read(&model), read(&small));
    let (ft, st) = (
        safetensors::SafeTensors::deserialize(&fb).unwrap(),
        safetensors::SafeTensors::deserialize(&sb).unwrap(),
    );
    let mut params = 0;
    for (name, t) in ft.tensors() {
        let h = st.tensor(&name).unwrap();
        assert_eq!(h.dtype(), safetensors::Dtype::BF16, "{name}");
        assert_eq!(h.shape(), t.shape(), "{name}");
        for (x, y) in t.data().chunks_exact(4).zip(h.data().chunks_exact(2)) {
            let v = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
            let r = f32::from_bits(u32::from(u16::from_le_bytes([y[0], y[1]])) << 16);
            assert!((r - v).abs() <= v.abs() / 256.0, "{name}: {v} -> {r}");
            params += 1;
        }
    }
    assert_eq!(c["params"], params);
    assert_eq!(SafeMeta::of(&fb), SafeMeta::of(&sb), "metadata kept");
    let m = small.to_str().unwrap();
    let o = run(&["lm", "eval", "--model", m, "--data", vs, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let es = last_json(&o)["ppl"].as_f64().unwrap();
    assert!((es / ef - 1.0).abs() < 0.01, "bf16 file ppl {es} vs {ef}");
    let o = run(&[
        "lm",
        "generate",
        "--model",
        m,
        "--max-tokens",
        "5",
        "--seed",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    convert(&small, &back, "f32");
    let bb = read(&back);
    let bt = safetensors::SafeTensors::deserialize(&bb).unwrap();
    for (name, h) in st.tensors() {
        let w = bt.tensor(&name).unwrap();
        assert_eq!(w.dtype(), safetensors::Dtype::F32);
        let widened: Vec<u8> = h
            .data()
            .chunks_exact(2)
            .flat_map(|y| (u32::from(u16::from_le_bytes([y[0], y[1]])) << 16).to_le_bytes())
            .collect();
        assert_eq!(w.data(), &widened[..], "{name}");
    }
    // The training state stays f32 (resuming needs it): refused in one line, exit 2.
    let o = run(&[
        "convert",
        "--model",
        f.join("train_state.safetensors").to_str().unwrap(),
        "--out",
        d.join("x.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("training state") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!d.join("x.safetensors").exists());
    let o = run(&["convert", "--model", m, "--out", m, "--dtype", "fp8"]);
    assert_eq!(o.status.code(), Some(2));

    let bench = |p: &str| {
        let o = run(&[
            "bench",
            "lm",
            "--hidden",
            "32",
            "--vocab",
            "50",
            "--batch-size",
            "4",
            "--bptt",
            "10",
            "--steps",
            "2",
            "--precision",
            p,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        last_json(&o)["kernel"].as_str().unwrap().to_string()
    };
    assert_eq!(bench("f32"), "fp32");
    let k = bench("bf16");
    assert!(
        ["amx-bf16", "avx512-bf16", "fp32"].contains(&k.as_str()),
        "{k}"
    );
    let bad = run(&["bench", "lm", "--precision", "fp8"]);
    assert_eq!(bad.status.code(), Some(2));
}
