//! GFLOP/s of each AVX2 kernel on the seed network's layer shapes, one thread.
//! `cargo run --release --example kernel_breakdown [BATCH]` (default 64); with
//! `KERNELS=avx512`, the 512-bit versions of the three products (`kernels::avx512`). Then,
//! when the cache has MNIST, the first layer on its test images with and without skipping
//! blocks of zero pixels.
#[cfg(target_arch = "x86_64")]
fn main() {
    use mnist_mlp::kernels::avx2::{self, Act};
    use mnist_mlp::kernels::avx512;
    use mnist_mlp::optim::{L2Mode, Optimizer};
    use std::time::Instant;
    assert!(avx2::available());
    let wide = std::env::var("KERNELS").as_deref() == Ok("avx512");
    assert!(!wide || avx512::available(), "this CPU has no AVX-512F/DQ");
    let products = avx512::Products::new(wide);
    let b: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let reps = (12_800 / b).max(4);
    let time = |f: &mut dyn FnMut()| {
        for _ in 0..20 {
            f();
        }
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        best
    };
    let mut total = 0.0;
    for (i, o) in [(784usize, 500usize), (500, 250), (250, 100), (100, 10)] {
        let a = vec![0.5f32; b * i];
        let mut w = vec![0.01f32; o * i];
        let mut v = vec![0.0f32; o * i];
        let mut z = vec![0f32; b * o];
        let d = vec![0.001f32; b * o];
        let mut d_a = vec![0f32; b * i];
        let flops = 2.0 * (b * i * o) as f64;
        let t_fwd = time(&mut || unsafe {
            (products.matmul_nt)(b, i, a.as_ptr(), i, w.as_ptr(), i, 0..o, z.as_mut_ptr(), o, None)
        });
        let t_da = time(&mut || unsafe {
            (products.matmul_nn_dact)(
                b,
                o,
                d.as_ptr(),
                o,
                w.as_ptr(),
                i,
                a.as_ptr(),
                d_a.as_mut_ptr(),
                i,
                0..i,
                Act::Relu,
            )
        });
        let up: avx2::Update = Optimizer::sgd(0.9, 0.0, L2Mode::PerSample).update(0.0, 1, b);
        let t_dw = time(&mut || unsafe {
            (products.weight_grad_update)(
                b,
                i,
                d.as_ptr(),
                o,
                1,
                a.as_ptr(),
                avx2::PanelLayout::rows(i),
                w.as_mut_ptr(),
                v.as_mut_ptr(),
                std::ptr::null_mut(),
                0..o,
                &up,
                None,
            )
        });
        // The same with d_z packed transposed, (O, B + 16), as the engine does at large batches.
        let ld_t = b + 16;
        let d_t = vec![0.001f32; o * ld_t];
        // … and the layer input packed in column panels, as the engine does.
        let mut a_packed = vec![0f32; b * i.next_multiple_of(avx2::PANEL)];
        unsafe { avx2::pack_panels(b, i, a.as_ptr(), 0..i, a_packed.as_mut_ptr()) };
        let t_dw_t = time(&mut || unsafe {
            (products.weight_grad_update)(
                b,
                i,
                d_t.as_ptr(),
                1,
                ld_t,
                a_packed.as_ptr(),
                avx2::PanelLayout::packed(b),
                w.as_mut_ptr(),
                v.as_mut_ptr(),
                std::ptr::null_mut(),
                0..o,
                &up,
                None,
            )
        });
        println!(
            "{i:>4}→{o:<4} forward {:>6.1} µs {:>5.1} GF/s | d_a {:>6.1} µs {:>5.1} GF/s | d_w+update {:>6.1} µs {:>5.1} GF/s, packed d_z and a {:>5.1} GF/s",
            t_fwd * 1e6,
            flops / t_fwd / 1e9,
            t_da * 1e6,
            flops / t_da / 1e9,
            t_dw * 1e6,
            flops / t_dw / 1e9,
            flops / t_dw_t / 1e9
        );
        total += t_fwd + t_dw_t + if i == 784 { 0.0 } else { t_da };
    }
    println!("sum of the step's kernels: {:.3} ms", total * 1e3);

    // The first layer on MNIST's test images, whose blocks of zero pixels its products skip
    // (the same bits): 40 batches in turn, each timed with and without its map.
    let Some(images) = mnist_mlp::bench::cached_test_images() else {
        println!("(no MNIST in the cache: the first layer's skipping of zero pixels is not timed)");
        return;
    };
    let (i, o) = (784usize, 500usize);
    let batches = (images.len() / (b * i)).min(40);
    let maps: Vec<Vec<u64>> = (0..batches)
        .map(|k| {
            let mut map = Vec::new();
            unsafe { avx2::nonzero_blocks(b, i, images[k * b * i..].as_ptr(), i, &mut map) };
            map
        })
        .collect();
    let w = vec![0.01f32; o * i];
    let (mut w_up, mut v) = (w.clone(), vec![0.0f32; o * i]);
    let mut z = vec![0f32; b * o];
    let ld_t = b + 16;
    let d_t = vec![0.001f32; o * ld_t];
    let up: avx2::Update = Optimizer::sgd(0.9, 0.0, L2Mode::PerSample).update(0.0, 1, b);
    let flops = 2.0 * (b * i * o) as f64;
    let mut line = format!("{i:>4}→{o:<4} on MNIST test images, dense-equivalent GF/s:");
    for skip in [false, true] {
        let mut k = 0;
        let t_fwd = time(&mut || unsafe {
            let nz = skip.then_some(&maps[k][..]);
            (products.matmul_nt)(
                b,
                i,
                images[k * b * i..].as_ptr(),
                i,
                w.as_ptr(),
                i,
                0..o,
                z.as_mut_ptr(),
                o,
                nz,
            );
            k = (k + 1) % batches;
        });
        let mut k = 0;
        let t_dw = time(&mut || unsafe {
            let nz = skip.then_some(&maps[k][..]);
            (products.weight_grad_update)(
                b,
                i,
                d_t.as_ptr(),
                1,
                ld_t,
                images[k * b * i..].as_ptr(),
                avx2::PanelLayout::rows(i),
                w_up.as_mut_ptr(),
                v.as_mut_ptr(),
                std::ptr::null_mut(),
                0..o,
                &up,
                nz,
            );
            k = (k + 1) % batches;
        });
        line += &format!(
            " | {} forward {:>6.1} µs {:>5.1}, d_w+update {:>6.1} µs {:>5.1}",
            if skip {
                "zero blocks skipped:"
            } else {
                "every block:"
            },
            t_fwd * 1e6,
            flops / t_fwd / 1e9,
            t_dw * 1e6,
            flops / t_dw / 1e9
        );
    }
    println!("{line}");
}
#[cfg(not(target_arch = "x86_64"))]
fn main() {}
