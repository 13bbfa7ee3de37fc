//! `mnist-mlp bench`: how fast the training step and the evaluation pass run on this machine,
//! measured against the f32 matrix-product peak measured on the spot.

use crate::config::Kernels;
use crate::error::Result;
use crate::kernels::{Backend, Engine, StepParams};
use crate::nn::{Activation, Init, Mlp, Workspace};
use crate::optim::{L2Mode, Optimizer};
use crate::rng::Rng;
use serde::Serialize;
use std::time::Instant;

/// The seed report's network.
pub const SIZES: [usize; 5] = [784, 500, 250, 100, 10];

/// Floating-point operations of one training sample: forward `2·I·O` per layer, weight
/// gradient `2·I·O`, input gradient `2·I·O` for every layer but the first.
pub fn flops_per_sample(sizes: &[usize]) -> f64 {
    let products: Vec<f64> = sizes.windows(2).map(|w| (w[0] * w[1]) as f64).collect();
    let all: f64 = products.iter().sum();
    2.0 * all + 2.0 * all + 2.0 * (all - products[0])
}

#[derive(Clone, Debug, Serialize)]
pub struct StepFigure {
    pub batch: usize,
    pub threads: usize,
    pub kernels: String,
    /// `"MNIST test images"` (from the cache: the first layer's products skip their blocks of
    /// zero pixels, as in training) or `"random pixels"` (no MNIST in the cache: dense).
    pub input: String,
    pub ms_per_step: f64,
    pub samples_per_second: f64,
    /// The dense step's FLOPs ([`flops_per_sample`]) per second. On MNIST's images the step
    /// does fewer (it skips zero blocks), so this is what a dense implementation would need to
    /// match it, and it can exceed the peaks below.
    pub gflops: f64,
    /// Of the compute ceiling (FMA in registers) measured with the same thread count.
    pub percent_of_peak: f64,
    /// Of the 1024³ GEMM measured with the same thread count (NaN if not measured).
    pub percent_of_gemm_peak: f64,
    /// 8000 iterations at this batch size, training loop only.
    pub seconds_for_8000_iterations: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalFigure {
    pub threads: usize,
    /// `"MNIST test set"` (from the cache, as `train` and `eval` see it: the first layer skips
    /// zero pixels) or `"random pixels"` (no MNIST in the cache: dense, no zeros to skip).
    pub input: String,
    pub ms_per_10000_images: f64,
    pub images_per_second: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub cpu: String,
    pub tool_version: String,
    pub flops_per_sample: f64,
    /// Compute ceiling: independent FMAs in registers on every thread, by thread count. The
    /// `percent_of_peak` figures are relative to this.
    pub fma_peak_gflops: Vec<(usize, f64)>,
    /// A well-tuned general f32 GEMM (1024³ through `matrixmultiply`), by thread count, for
    /// comparison.
    pub gemm_peak_gflops: Vec<(usize, f64)>,
    pub steps: Vec<StepFigure>,
    pub eval: Vec<EvalFigure>,
    /// Round trips of a value between two threads, ns, before and after the timings (empty
    /// when only one thread is timed): how far apart the cores this run got are. Every
    /// multi-threaded step moves thousands of cache lines between its cores, so its figures
    /// fall when this grows (on a virtual machine it can change from one minute to the next).
    /// A normal figure does not clear the run: a busy neighbour on the same physical core
    /// slows it without changing this.
    pub core_round_trip_ns: Vec<f64>,
    /// Peak resident memory of this process, MiB.
    pub peak_memory_mib: Option<f64>,
}

/// Nanoseconds for a value to go from this thread to another one and back, through one atomic
/// (the mean over many round trips, about 0.1 s at most). None with fewer than two cores.
pub fn core_round_trip_ns() -> Option<f64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    const STOP: u64 = u64::MAX;
    let flag = AtomicU64::new(0);
    let mut trips = 0u64;
    let mut seconds = 0.0;
    std::thread::scope(|s| {
        s.spawn(|| {
            // Answer each odd value v with v + 1, until told to stop.
            let mut expect = 1;
            loop {
                match flag.load(Ordering::Acquire) {
                    STOP => return,
                    v if v == expect => {
                        flag.store(v + 1, Ordering::Release);
                        expect += 2;
                    }
                    _ => {}
                }
            }
        });
        let started = Instant::now();
        while trips < 200_000 && (!trips.is_multiple_of(64) || started.elapsed().as_secs_f64() < 0.1) {
            let v = 2 * trips + 1;
            flag.store(v, Ordering::Release);
            while flag.load(Ordering::Acquire) != v + 1 {}
            trips += 1;
        }
        seconds = started.elapsed().as_secs_f64();
        flag.store(STOP, Ordering::Release);
    });
    Some(seconds / trips as f64 * 1e9)
}

/// Best-of-`reps` GFLOP/s of a 1024³ sgemm in this process (its thread count is fixed by
/// `MATMUL_NUM_THREADS`, which `matrixmultiply` reads once per process).
pub fn gemm_peak() -> f64 {
    let n = 1024;
    let mut rng = Rng::new(1, 0);
    let a: Vec<f32> = (0..n * n).map(|_| rng.next_f64() as f32).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.next_f64() as f32).collect();
    let mut c = vec![0f32; n * n];
    let mut best = f64::MAX;
    for _ in 0..6 {
        let t = Instant::now();
        crate::kernels::gemm(
            n,
            n,
            n,
            &a,
            crate::kernels::Op::N,
            &b,
            crate::kernels::Op::N,
            0.0,
            &mut c,
        );
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

/// GFLOP/s of `threads` threads each running the FMA loop at once (AVX2 CPUs only).
pub fn fma_peak(threads: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::avx2::available() {
        use crate::kernels::avx2::{fma_loop, fma_loop_flops};
        let iters = 20_000_000;
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    // SAFETY: AVX2 and FMA are available (checked above).
                    s.spawn(|| std::hint::black_box(unsafe { fma_loop(iters) }));
                }
            });
            best = best.min(t.elapsed().as_secs_f64());
        }
        return Some(fma_loop_flops(iters) * threads as f64 / best / 1e9);
    }
    let _ = threads;
    None
}

/// The seed network and a set of batches, ready to take training steps: the workload every
/// step timing here measures. The batches are cut from `images` (MNIST pixels as f32, 784 per
/// image), one after another, as training draws them, or else made of random dense pixels.
/// The input matters: the first layer's products skip blocks of zero pixels, which MNIST's
/// images are full of and random pixels never have.
pub struct SeedStep {
    mlp: Mlp<f32>,
    /// SGD's velocity (the optimizer state [`Engine::train_step`] updates).
    first_moment: Vec<f32>,
    grads: Vec<f32>,
    ws: Workspace<f32>,
    /// `batches` batches of pixels, one after another.
    x: Vec<f32>,
    batches: usize,
    next: usize,
    /// Whether `x` holds images (else random pixels).
    from_images: bool,
    labels: Vec<u8>,
    p: StepParams,
}

impl SeedStep {
    pub fn new(batch: usize, act: Activation, images: Option<&[f32]>) -> SeedStep {
        let mut rng = Rng::new(7, 0);
        let mut mlp = Mlp::<f32>::new(&SIZES, act);
        mlp.init(Init::Uniform, &mut rng);
        let n = mlp.params.len();
        let per_batch = batch * SIZES[0];
        let from_images = images.is_some_and(|x| x.len() >= per_batch);
        let x: Vec<f32> = match images {
            // As many whole batches as the images hold, up to 8 MB of them.
            Some(images) if from_images => {
                let batches = (images.len() / per_batch).min((2 << 20) / per_batch).max(1);
                images[..batches * per_batch].to_vec()
            }
            _ => (0..per_batch).map(|_| rng.below(256) as f32 / 255.0).collect(),
        };
        let labels = (0..batch).map(|_| rng.below(10) as u8).collect();
        SeedStep {
            mlp,
            first_moment: vec![0.0; n],
            grads: vec![0.0; n],
            ws: Workspace::new(&SIZES, batch),
            batches: x.len() / per_batch,
            x,
            next: 0,
            from_images,
            labels,
            p: StepParams {
                lr: 0.01,
                t: 1,
                opt: Optimizer::sgd(0.9, 0.005, L2Mode::PerSample),
                loss_scale: 1.0 / batch as f64,
                max_norm: None,
            },
        }
    }

    /// Whether the batches are MNIST images (else random dense pixels).
    pub fn on_images(&self) -> bool {
        self.from_images
    }

    /// One training step on `engine`, the next batch copied in first as training does.
    pub fn run(&mut self, engine: &Engine) {
        let batch = self.labels.len();
        let per_batch = batch * SIZES[0];
        let x = &self.x[self.next * per_batch..(self.next + 1) * per_batch];
        self.next = (self.next + 1) % self.batches;
        self.ws.input_mut(batch).copy_from_slice(x);
        engine.train_step(
            &mut self.mlp,
            &mut self.first_moment,
            &mut [],
            &mut self.grads,
            &mut self.ws,
            &self.labels,
            self.p,
        );
    }
}

/// Seconds per training step of the seed network at `batch`, best of three timed blocks, on
/// batches cut from `images` if given (see [`SeedStep`]).
pub fn time_step(engine: &Engine, batch: usize, act: Activation, images: Option<&[f32]>) -> f64 {
    let mut seed = SeedStep::new(batch, act, images);
    let mut step = || seed.run(engine);
    // About 0.3 s per block whatever the batch.
    let steps = (20_000 / batch).max(10);
    for _ in 0..steps / 4 {
        step();
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..steps {
            step();
        }
        best = best.min(t.elapsed().as_secs_f64() / steps as f64);
    }
    best
}

/// Milliseconds for one forward pass over 10,000 images in chunks of 1000, as `evaluate`
/// runs it (the model prepared once per pass): over `test` (MNIST's test set, already as f32
/// pixels) if given, else over random dense pixels.
pub fn time_eval(engine: &Engine, test: Option<&[f32]>) -> f64 {
    let mut rng = Rng::new(8, 0);
    let mut mlp = Mlp::<f32>::new(&SIZES, Activation::Relu);
    mlp.init(Init::Uniform, &mut rng);
    let chunk = 1000;
    let mut ws = Workspace::new(&SIZES, chunk);
    let random: Vec<f32>;
    let x = match test {
        Some(x) => x,
        None => {
            random = (0..10 * chunk * SIZES[0])
                .map(|_| rng.below(256) as f32 / 255.0)
                .collect();
            &random
        }
    };
    let mut best = f64::MAX;
    for _ in 0..4 {
        let t = Instant::now();
        let prepared = engine.prepare(&mlp);
        for part in x.chunks(chunk * SIZES[0]).take(10) {
            let n = part.len() / SIZES[0];
            ws.input_mut(n).copy_from_slice(part);
            engine.forward_prepared(&mlp, &mut ws, n, prepared.as_ref());
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e3
}

/// MNIST's 10,000 test images as f32 pixels, if the cache has them (never fetched here): the
/// input the step and evaluation timings use when they can.
pub fn cached_test_images() -> Option<Vec<f32>> {
    cached_test_images_of(crate::data::DatasetKind::Mnist)
}

/// [`cached_test_images`] of another data set of 28×28 images.
pub fn cached_test_images_of(kind: crate::data::DatasetKind) -> Option<Vec<f32>> {
    use crate::data::mnist::Dataset;
    Dataset::open(None, kind, false)
        .ok()
        .filter(|d| d.input_size() == SIZES[0] && d.test.len() >= 10_000)
        .map(|d| {
            let idx: Vec<u32> = (0..10_000).collect();
            let mut x = vec![0.0f32; 10_000 * SIZES[0]];
            d.test.gather(&idx, &mut x, &mut Vec::new());
            x
        })
}

pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Run the step and evaluation benchmarks. `peaks` are the GEMM peaks per thread count,
/// measured by the caller (in child processes, one per thread count).
pub fn run(
    batches: &[usize],
    threads: &[usize],
    kernels: Kernels,
    peaks: Vec<(usize, f64)>,
    test_images: Option<&[f32]>,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport> {
    let backend: Backend = kernels.resolve()?;
    let fps = flops_per_sample(&SIZES);
    let mut round_trips = Vec::new();
    record_round_trip(threads, "before the timings", &mut round_trips, &mut progress);
    let fma = fma_peaks(threads, &mut progress);
    let timer = Timer::new(backend, test_images, fps, &fma, &peaks, &mut progress);
    let mut steps = Vec::new();
    let mut eval = Vec::new();
    for &t in threads {
        let engine = Engine::new(t, backend);
        steps.extend(timer.steps(&engine, t, batches, &mut progress));
        eval.push(timer.eval(&engine, t, &mut progress));
    }
    record_round_trip(threads, "after the timings", &mut round_trips, &mut progress);
    Ok(BenchReport {
        cpu: crate::study::Machine::detect().cpu,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        flops_per_sample: fps,
        fma_peak_gflops: fma,
        gemm_peak_gflops: peaks,
        steps,
        eval,
        core_round_trip_ns: round_trips,
        peak_memory_mib: peak_memory_mib(),
    })
}

/// Measure and report the core-to-core round trip, if more than one thread is timed and can be.
fn record_round_trip(
    threads: &[usize],
    when: &str,
    round_trips: &mut Vec<f64>,
    progress: &mut dyn FnMut(&str),
) {
    if threads.iter().any(|&t| t > 1)
        && let Some(ns) = core_round_trip_ns()
    {
        progress(&format!("core to core round trip  {ns:>5.0} ns  ({when})"));
        round_trips.push(ns);
    }
}

/// Measure and report the FMA peak of each thread count (none where it cannot be measured).
fn fma_peaks(threads: &[usize], progress: &mut dyn FnMut(&str)) -> Vec<(usize, f64)> {
    let fma: Vec<(usize, f64)> = threads
        .iter()
        .filter_map(|&t| fma_peak(t).map(|p| (t, p)))
        .collect();
    for (t, p) in &fma {
        progress(&format!(
            "FMA peak    registers only   threads {t}  {p:>6.1} GFLOP/s"
        ));
    }
    fma
}

/// The backend, input and peaks that the step and evaluation timings of one bench share.
struct Timer<'a> {
    backend: Backend,
    test_images: Option<&'a [f32]>,
    /// What the steps run on, as [`StepFigure::input`] says it.
    input: &'static str,
    /// What the evaluation runs on, as [`EvalFigure::input`] says it.
    eval_input: &'static str,
    fps: f64,
    fma: &'a [(usize, f64)],
    peaks: &'a [(usize, f64)],
}

impl<'a> Timer<'a> {
    /// The timer of a bench on `test_images` (else random pixels), after reporting which.
    fn new(
        backend: Backend,
        test_images: Option<&'a [f32]>,
        fps: f64,
        fma: &'a [(usize, f64)],
        peaks: &'a [(usize, f64)],
        progress: &mut dyn FnMut(&str),
    ) -> Timer<'a> {
        let (input, eval_input) = match test_images {
            Some(_) => ("MNIST test images", "MNIST test set"),
            None => ("random pixels", "random pixels"),
        };
        progress(&format!(
            "train steps on {input}{}",
            if test_images.is_some() {
                " (GFLOP/s and % count the dense step's FLOPs; the first layer skips zero blocks)"
            } else {
                " (dense: no zeros to skip)"
            }
        ));
        Timer {
            backend,
            test_images,
            input,
            eval_input,
            fps,
            fma,
            peaks,
        }
    }

    /// Time and report the training step at each of `batches` on `engine` (`t` threads).
    fn steps(
        &self,
        engine: &Engine,
        t: usize,
        batches: &[usize],
        progress: &mut dyn FnMut(&str),
    ) -> Vec<StepFigure> {
        // Percentages are of the compute ceiling where it can be measured, else of the GEMM.
        let peak = self.fma.iter().chain(self.peaks).find(|p| p.0 == t).map(|p| p.1);
        let gemm = self.peaks.iter().find(|p| p.0 == t).map(|p| p.1);
        let mut steps = Vec::new();
        for &batch in batches {
            let secs = time_step(engine, batch, Activation::Relu, self.test_images);
            let gflops = self.fps * batch as f64 / secs / 1e9;
            let fig = StepFigure {
                batch,
                threads: t,
                kernels: self.backend.name().into(),
                input: self.input.into(),
                ms_per_step: secs * 1e3,
                samples_per_second: batch as f64 / secs,
                gflops,
                percent_of_peak: peak.map(|p| 100.0 * gflops / p).unwrap_or(f64::NAN),
                percent_of_gemm_peak: gemm.map(|p| 100.0 * gflops / p).unwrap_or(f64::NAN),
                seconds_for_8000_iterations: secs * 8000.0,
            };
            progress(&format!(
                "train step  batch {:>4}  threads {t}  {:>7.3} ms  {:>9.0} samples/s  {:>6.1} GFLOP/s  {:>5.1}% of FMA peak  {:>5.1}% of GEMM  8000 its: {:>5.1} s",
                batch,
                fig.ms_per_step,
                fig.samples_per_second,
                fig.gflops,
                fig.percent_of_peak,
                fig.percent_of_gemm_peak,
                fig.seconds_for_8000_iterations
            ));
            steps.push(fig);
        }
        steps
    }

    /// Time and report the evaluation pass on `engine` (`t` threads).
    fn eval(&self, engine: &Engine, t: usize, progress: &mut dyn FnMut(&str)) -> EvalFigure {
        let ms = time_eval(engine, self.test_images);
        progress(&format!(
            "evaluation  10,000 images  threads {t}  {ms:>7.1} ms  {:>9.0} images/s  ({})",
            1e7 / ms,
            self.eval_input
        ));
        EvalFigure {
            threads: t,
            input: self.eval_input.into(),
            ms_per_10000_images: ms,
            images_per_second: 1e7 / ms,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_seed_network_costs_about_2_47_mflop_per_sample() {
        let f = super::flops_per_sample(&super::SIZES);
        // 2·543,000 + 2·543,000 + 2·(543,000 − 392,000)
        assert_eq!(f, 2_474_000.0);
    }

    #[test]
    fn a_round_trip_between_cores_takes_a_measurable_time_and_ends() {
        if let Some(ns) = super::core_round_trip_ns() {
            // Returning at all means the other thread answered every trip and stopped. How long
            // a trip takes is a measurement, not a property: on a loaded machine it can take
            // milliseconds, so only its being a positive, finite time is asserted.
            assert!(ns.is_finite() && ns > 0.0, "{ns} ns");
        }
    }
}
